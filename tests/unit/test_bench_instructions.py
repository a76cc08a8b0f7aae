"""bench.instructions: reading callgrind's totals, and the client it counts requests with."""

from __future__ import annotations

import socket
import ssl
import threading

import pytest

from bench.certs import make_cert
from bench.instructions import MEASURED, Client, callgrind_counts, callgrind_total, per_request_figures, request


def test_a_callgrind_file_gives_its_command_and_total(tmp_path) -> None:
    out = tmp_path / "cg.lbcore.600.123"
    out.write_text(
        "# callgrind format\nversion: 1\ncreator: callgrind-3.19.0\npid: 123\n"
        "cmd:  /usr/bin/python3 -m lbcore.proxy.worker --control-fd 14\npart: 1\n\n"
        "events: Ir\nfl=x\nfn=main\n1 5\n\nsummary: 1339408877\n\ntotals: 1339408877\n"
    )
    command, total = callgrind_total(out)
    assert total == 1_339_408_877
    assert MEASURED["lbcore"] in command and MEASURED["haproxy"] not in command


def test_with_the_cache_simulated_every_event_is_read_and_figures_are_per_request(tmp_path) -> None:
    events = "Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw Bc Bcm Bi Bim"
    files = []
    for requests, scale in ((600, 1), (3000, 3)):
        out = tmp_path / f"cg.haproxy.{requests}.1"
        totals = " ".join(str(scale * (i + 1) * 1000) for i in range(13))
        out.write_text(f"cmd: haproxy -db -f x.cfg\nevents: {events}\nfl=x\nfn=main\n1 5\n\ntotals: {totals}\n")
        files.append(out)
    command, few = callgrind_counts(files[0])
    assert command.startswith("haproxy") and few["Ir"] == 1000 and few["Bim"] == 13000
    assert callgrind_total(files[1]) == (command, 3000)
    _, many = callgrind_counts(files[1])
    per = per_request_figures(few, many, 2400)
    # D1mr (5) + D1mw (6), DLmr (8) + DLmw (9), I1mr (4), Bcm (11) + Bim (13): thousands, twice over 2400 requests
    assert per == {
        "L1 data misses": 2 * 11000 / 2400,
        "last-level data misses": 2 * 17000 / 2400,
        "L1 instruction misses": 2 * 4000 / 2400,
        "mispredicted branches": 2 * 24000 / 2400,
    }


def test_a_file_without_a_total_is_refused(tmp_path) -> None:
    out = tmp_path / "cg.haproxy.600.1"
    out.write_text("cmd: haproxy -db\n")
    with pytest.raises(SystemExit, match="no instruction total"):
        callgrind_total(out)


@pytest.mark.parametrize("mode", ["keepalive", "close", "https-keepalive", "tls-resumed", "tls-full-rsa", "tls-full-ecdsa"])
def test_the_client_reads_whole_responses_on_one_connection_or_one_each(mode: str, tmp_path) -> None:
    close = mode != "keepalive" and mode != "https-keepalive"
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    context = None
    if mode != "keepalive" and mode != "close":
        cert = make_cert(tmp_path, "ecdsa-p256")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert.cert, cert.key)
    body = b"hello"
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n" + body
    seen: list[tuple[int, bytes]] = []  # (connection number, request)

    def serve() -> None:
        for number in range(1 if not close else 3):
            conn, _ = server.accept()
            if context is not None:
                conn = context.wrap_socket(conn, server_side=True)
            with conn:
                for _ in range(3 if not close else 1):
                    data = b""
                    while not data.endswith(b"\r\n\r\n"):
                        data += conn.recv(4096)
                    seen.append((number, data))
                    # the response in two writes: the client must wait for the whole body
                    conn.sendall(answer[:10])
                    conn.sendall(answer[10:])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = Client(port, mode)
    client.run(3)
    thread.join(timeout=30)
    server.close()
    # tls-resumed: the second and third connections resume the session the one before got;
    # tls-full-*: none offers one (the server here would take it), each is a full handshake
    assert client.resumed == (2 if mode == "tls-resumed" else 0)
    assert [number for number, _ in seen] == ([0, 0, 0] if not close else [0, 1, 2])
    assert all(data == request(port, close) for _, data in seen)
    assert all((b"Connection: close" in data) == close for _, data in seen)


@pytest.mark.parametrize("mode", ["keepalive", "close"])
def test_with_concurrency_every_connection_has_a_request_in_flight_before_any_answer(mode: str) -> None:
    close = mode == "close"
    server = socket.create_server(("127.0.0.1", 0), backlog=16)
    port = server.getsockname()[1]
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    in_flight = threading.Barrier(3, timeout=30)  # the three connections' requests, all read first
    requests: list[bytes] = []

    def handle(conn: socket.socket) -> None:
        with conn:
            for _ in range(1 if close else 2):
                data = b""
                while not data.endswith(b"\r\n\r\n"):
                    data += conn.recv(4096)
                requests.append(data)
                in_flight.wait()  # breaks (and the test fails) unless all three are in flight
                conn.sendall(answer)

    def serve() -> None:
        for _ in range(6 if close else 3):
            conn, _ = server.accept()
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = Client(port, mode, concurrency=3)
    client.run(6)  # two rounds of three
    thread.join(timeout=30)
    server.close()
    assert len(requests) == 6 and all(r == request(port, close) for r in requests)
    with pytest.raises(SystemExit, match="not a multiple"):
        client.run(4)
