"""HTTP/1.1 edges through the engine: bodies, upgrade, smuggling, errors, timeouts, flow control."""

from __future__ import annotations

import hashlib
import json
import os
import socket

import pytest
import requests

from tests.integration.harness import big_body, free_port, http_get, raw_exchange


def single(member, port, **listener):
    return {
        "version": 1,
        "listeners": [{"name": "web", "bind": f"127.0.0.1:{port}", "protocol": "http", "default_pool": "p", **listener}],
        "pools": [{"name": "p", "members": [{"name": member.name, "address": member.address}]}],
    }


@pytest.fixture
def one(members, engine):
    m = members("m1")
    port = free_port()
    eng = engine(single(m, port))
    return port, m, eng


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


def test_chunked_upload_is_forwarded_with_trailers(one):
    port, _, _ = one
    body = [os.urandom(1000), os.urandom(70000), b"end"]
    req = b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    for part in body:
        req += f"{len(part):x}\r\n".encode() + part + b"\r\n"
    req += b"0\r\nX-Sum: 42\r\n\r\n"
    raw = raw_exchange(port, req)
    assert status_of(raw) == 200
    data = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    assert data["body_bytes"] == sum(map(len, body))
    assert data["body_sha"] == hashlib.sha256(b"".join(body)).hexdigest()
    assert data["trailers"] == [["x-sum", "42"]]


def test_large_content_length_upload_streams(one):
    port, m, _ = one
    payload = os.urandom(3 * 1024 * 1024)
    r = requests.post(f"http://127.0.0.1:{port}/upload", data=payload, timeout=30)
    assert r.status_code == 200
    assert r.json()["body_sha"] == hashlib.sha256(payload).hexdigest()


def test_chunked_response_with_trailers_and_http10_client(one):
    port, _, _ = one
    raw = raw_exchange(port, b"GET /chunked?parts=4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, body = raw.split(b"\r\n\r\n", 1)
    assert b"transfer-encoding: chunked" in head.lower()
    assert b"part0;" in body and b"X-Checksum: 4" in body
    # an HTTP/1.0 client gets the body de-chunked and delimited by close
    raw = raw_exchange(port, b"GET /chunked?parts=2 HTTP/1.0\r\n\r\n")
    head, body = raw.split(b"\r\n\r\n", 1)
    assert b"chunked" not in head.lower()
    assert body == b"part0;part1;"


def test_close_delimited_response_and_head(one):
    port, _, _ = one
    status, headers, body = http_get(port, "/close")
    assert status == 200 and body == b"until-close body"
    raw = raw_exchange(port, b"HEAD /big?bytes=5000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, body = raw.split(b"\r\n\r\n", 1)
    assert b"Content-Length: 5000" in head and body == b""


@pytest.mark.parametrize("code", [204, 304])
def test_bodiless_statuses_keep_the_connection(one, code):
    port, _, _ = one
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET /status/{code} HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(f"HTTP/1.1 {code}".encode())
    assert data.count(b"HTTP/1.1 ") == 2


def test_expect_100_continue(one):
    port, _, _ = one
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
        first = s.recv(65536)
        assert first.startswith(b"HTTP/1.1 100")
        s.sendall(b"hello")
        rest = b""
        while chunk := s.recv(65536):
            rest += chunk
    final = (first + rest).split(b"HTTP/1.1 200", 1)[1]
    assert json.loads(final.split(b"\r\n\r\n", 1)[1])["body_bytes"] == 5


def test_websocket_upgrade_becomes_a_tunnel(one):
    port, _, _ = one
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(65536)
        assert head.startswith(b"HTTP/1.1 101")
        assert b"upgrade: websocket" in head.lower()
        for i in range(3):
            msg = f"frame-{i}".encode()
            s.sendall(msg)
            got = b""
            while len(got) < len(msg) + 5:
                got += s.recv(65536)
            assert got == b"echo:" + msg


def test_bytes_sent_with_the_upgrade_request_reach_the_tunnel(one):
    # The client does not wait for the 101: what follows the request head is held
    # until the member switched protocols, then goes through the tunnel, in order.
    port, _, _ = one
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\nearly-1")
        s.sendall(b"early-2")
        got = b""
        while not (b"\r\n\r\n" in got and got.split(b"\r\n\r\n", 1)[1].count(b"echo:") >= 1
                   and got.endswith(b"early-2")):
            chunk = s.recv(65536)
            assert chunk, got
            got += chunk
        head, tunnel = got.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101")
        assert tunnel.replace(b"echo:", b"") == b"early-1early-2"


@pytest.mark.parametrize(
    "raw",
    [
        # CL + TE: the classic smuggling vector
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        # conflicting Content-Length
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
        # obs-fold
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  folded\r\n\r\n",
        # space before colon
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length : 0\r\n\r\n",
        # bad header name
        b"GET / HTTP/1.1\r\nHost: x\r\nX(A): b\r\n\r\n",
        # TE with a non-chunked final coding
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        # two Host headers
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        # no Host in HTTP/1.1
        b"GET / HTTP/1.1\r\nX: y\r\n\r\n",
        # bad chunk size
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    ],
)
def test_smuggling_and_malformed_requests_are_refused(one, raw):
    port, m, _ = one
    before = m.requests
    out = raw_exchange(port, raw)
    assert status_of(out) in (400, 501)
    assert out.count(b"HTTP/1.1") == 1  # nothing after the error: the connection closed
    assert m.requests == before  # nothing reached the member


def test_oversized_request_line_and_headers(one):
    port, _, _ = one
    assert status_of(raw_exchange(port, b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")) == 414
    big = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 1000) for i in range(40))
    assert status_of(raw_exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n")) == 431
    assert status_of(raw_exchange(port, b"GET / HTTP/2.0\r\nHost: x\r\n\r\n")) == 505


def test_http_request_timeout_answers_408(members, engine):
    m = members("m")
    port = free_port()
    spec = single(m, port, timeouts={"http_request": "300ms"})
    engine(spec)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finishes the head (slowloris)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert status_of(data) == 408


def test_no_member_available_is_503_with_retry_after(engine):
    port = free_port()
    spec = {"version": 1, "listeners": [{"name": "web", "bind": f"127.0.0.1:{port}", "protocol": "http", "default_pool": "empty"}],
            "pools": [{"name": "empty", "members": []}]}
    engine(spec)
    status, headers, body = http_get(port)
    assert status == 503 and headers["retry-after"] == "1"
    assert body.startswith(b"503")


def test_refused_member_is_502_and_redispatch_avoids_it(members, engine):
    live = members("live")
    dead_port = free_port()  # nothing listens here
    port = free_port()
    spec = {"version": 1, "listeners": [{"name": "web", "bind": f"127.0.0.1:{port}", "protocol": "http", "default_pool": "p"}],
            "pools": [{"name": "p", "members": [{"name": "dead", "address": f"127.0.0.1:{dead_port}"}, {"name": "live", "address": live.address}]},
                      {"name": "only-dead", "members": [{"name": "dead", "address": f"127.0.0.1:{dead_port}"}]}]}
    spec["listeners"].append({"name": "web2", "bind": f"127.0.0.1:{free_port()}", "protocol": "http", "default_pool": "only-dead"})
    engine(spec)
    # every request succeeds: a refused connect is retried on the other member
    assert all(http_get(port)[0] == 200 for _ in range(6))
    status, _, body = http_get(int(spec["listeners"][1]["bind"].rsplit(":", 1)[1]))
    assert status == 502 and body.startswith(b"502")


def test_member_that_does_not_answer_is_504(members, engine):
    m = members("slow")
    port = free_port()
    spec = single(m, port)
    spec["pools"][0]["timeouts"] = {"server": "300ms"}
    engine(spec)
    status, _, body = http_get(port, "/hang")
    assert status == 504 and body.startswith(b"504")


def test_server_timeout_runs_from_each_read_of_the_response(members, engine):
    # 300 ms of server timeout; the member takes ~750 ms for its response but never
    # stays silent for more than 150 ms: the timeout is inactivity, so it all arrives.
    m = members("dripping")
    port = free_port()
    spec = single(m, port)
    spec["pools"][0]["timeouts"] = {"server": "300ms"}
    engine(spec)
    status, _, body = http_get(port, "/drip?parts=5&every=0.15")
    assert status == 200 and body == b"drip0drip1drip2drip3drip4"
    # Silent for longer than the timeout after the head went out: the response is cut
    # (no status can be sent any more), which the client sees as a short body.
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(b"GET /drip?parts=2&every=1.0 HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    finally:
        s.close()
    assert got.startswith(b"HTTP/1.1 200 ") and not got.endswith(b"drip0drip1")


def test_member_closing_mid_response_is_502_before_head(members, engine, loops):
    m = members("m")
    port = free_port()
    engine(single(m, port))
    import threading

    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", http_get(port, "/wait?gate=g")))
    t.start()
    m.wait_arrived("g")  # the member holds the request: now it dies
    m.stop()
    t.join(15)
    assert result["r"][0] == 502


def test_slow_client_does_not_grow_engine_memory(one):
    port, m, eng = one
    total = 256 * 1024 * 1024
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    try:
        s.sendall(f"GET /big?bytes={total} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert m.big_blocked.wait(20), "member never saw backpressure"
        # The client reads nothing: the member must stay blocked far from the end.
        assert not m.big_done.wait(1.0)
        assert m.big_sent < total // 4
        # engine workers stay small (no unbounded buffering of the 256 MiB body)
        for pid in eng.worker_pids():
            rss_kib = int(next(l for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")).split()[1])
            assert rss_kib < 120 * 1024
        # now read it all: every byte arrives
        got = 0
        s.settimeout(60)
        while got < total:
            chunk = s.recv(1 << 20)
            assert chunk
            got += len(chunk)
        assert got >= total
    finally:
        s.close()


def test_a_large_response_to_a_slow_reader_arrives_whole_and_in_order(one):
    # The engine writes straight to the socket while its transport holds nothing, and
    # through the transport once the kernel is full: the bytes must keep their order
    # across the two (the member's block n of 64 KiB is the byte n % 251). 10 MiB:
    # more than the kernel buffers on the way (4 MiB at most to send, 16 KiB here).
    port, _, _ = one
    blocks = 160
    total = blocks * 65536 + 1000
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    try:
        s.sendall(f"GET /big?bytes={total} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = bytearray()
        end = -1
        while end < 0 or len(data) < end + 4 + total:
            chunk = s.recv(65536)
            assert chunk
            data += chunk
            if end < 0:
                end = data.find(b"\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 200") and len(data) == end + 4 + total
        body = bytes(data[end + 4:])
        assert body == big_body(total)
    finally:
        s.close()


def test_max_connections_per_member_queues_requests(members, engine):
    import threading

    m = members("m")
    port = free_port()
    spec = single(m, port)
    spec["pools"][0]["max_connections_per_member"] = 1
    engine(spec)
    results = []
    first = threading.Thread(target=lambda: results.append(http_get(port, "/wait?gate=g")))
    first.start()
    m.wait_arrived("g")
    second = threading.Thread(target=lambda: results.append(http_get(port, "/")))
    second.start()
    second.join(0.5)  # bounded: the second request must not complete while the first holds the slot
    assert second.is_alive() and m.requests == 1  # only the parked one reached the member
    m.open_gate("g")
    first.join(10)
    second.join(10)
    assert sorted(r[0] for r in results) == [200, 200]
    assert m.accepted == 1  # the queued request reused the freed connection


def test_queue_timeout_is_503(members, engine):
    import threading

    m = members("m")
    port = free_port()
    spec = single(m, port)
    spec["pools"][0]["max_connections_per_member"] = 1
    spec["pools"][0]["timeouts"] = {"connect": "200ms"}
    engine(spec)
    holder = threading.Thread(target=lambda: http_get(port, "/wait?gate=g"))
    holder.start()
    m.wait_arrived("g")
    status, headers, _ = http_get(port, "/")
    assert status == 503 and headers["retry-after"] == "1"
    m.open_gate("g")
    holder.join(10)


def test_body_limit_refuses_content_length_and_chunked(members, engine):
    m = members("m")
    port = free_port()
    spec = single(m, port, limits={"max_body": "1k"})
    engine(spec)
    assert status_of(raw_exchange(port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n" + b"a" * 2000)) == 413
    chunked = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + b"400\r\n" + b"a" * 1024 + b"\r\n" + b"10\r\n" + b"b" * 16 + b"\r\n0\r\n\r\n"
    assert status_of(raw_exchange(port, chunked)) == 413
    ok = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + b"400\r\n" + b"a" * 1024 + b"\r\n0\r\n\r\n"
    assert status_of(raw_exchange(port, ok)) == 200


def test_declined_upgrade_and_connect_close_the_connection(one):
    port, _, _ = one
    # the member answers 200 (not 101) to an upgrade request on "/": response, then close
    raw = raw_exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", read_until_close=False)
    assert status_of(raw) == 200
    raw = raw_exchange(port, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", read_until_close=False)
    assert status_of(raw) == 405


def test_idle_keepalive_connection_is_closed(members, engine):
    m = members("m")
    port = free_port()
    engine(single(m, port, timeouts={"keepalive": "200ms"}))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):  # the response, then EOF once idle past keepalive
            data += chunk
    assert data.startswith(b"HTTP/1.1 200") and data.count(b"HTTP/1.1 ") == 1


def test_client_timeout_does_not_cut_a_slow_member(members, engine):
    import threading

    m = members("m")
    port = free_port()
    spec = single(m, port, timeouts={"client": "300ms"})
    spec["pools"][0]["timeouts"] = {"server": "30s"}
    engine(spec)
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", http_get(port, "/wait?gate=slow")))
    t.start()
    m.wait_arrived("slow")
    t.join(1.0)  # longer than the client timeout: the waiting client must not be cut off
    assert t.is_alive()
    m.open_gate("slow")
    t.join(10)
    assert result["r"][0] == 200
