"""Routing through the running engine: every fetch, per request on keep-alive, TCP, redirect."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess

import pytest

from tests.integration.harness import free_port, http_get


def spec_with(listeners, pools, **defaults):
    return {"version": 1, "defaults": defaults or {}, "listeners": listeners, "pools": pools}


def pool(name, *members, **kw):
    return {"name": name, "members": [{"name": m.name, "address": m.address} for m in members], **kw}


@pytest.fixture
def routed(members, engine):
    """One HTTP listener with an ACL per fetch kind, each to its own pool."""
    names = ["www", "api", "static", "net", "cookie", "header", "method", "query", "wild", "regex"]
    ms = {n: members(n) for n in names}
    port = free_port()
    acls = [
        {"name": "api", "condition": "hdr(host) -i api.example.com", "pool": "api"},
        {"name": "static", "condition": {"path": {"prefix": "/static/"}}, "pool": "static"},
        {"name": "net", "condition": "src 127.0.0.2/32", "pool": "net"},
        {"name": "cookie", "condition": "req.cook(beta) -m found", "pool": "cookie"},
        {"name": "header", "condition": {"header": {"name": "X-Env", "equals": "canary"}}, "pool": "header"},
        {"name": "method", "condition": "method DELETE", "pool": "method"},
        {"name": "query", "condition": {"query": {"name": "v", "equals": "2"}}, "pool": "query"},
        {"name": "wild", "condition": "host *.wild.example", "pool": "wild"},
        {"name": "regex", "condition": "path_reg ^/v[0-9]+/items$", "pool": "regex"},
    ]
    spec = spec_with(
        [{"name": "web", "bind": f"127.0.0.1:{port}", "protocol": "http", "acls": acls, "default_pool": "www"}],
        [pool(n, m) for n, m in ms.items()],
    )
    eng = engine(spec, workers=2)
    return port, ms, eng


def member_of(body: bytes) -> str:
    return json.loads(body)["member"]


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({}, "www"),
        ({"headers": {"Host": "api.example.com"}}, "api"),
        ({"headers": {"Host": "API.example.com"}}, "api"),  # -i
        ({"path": "/static/logo.png"}, "static"),
        ({"path": "/staticx"}, "www"),
        ({"source": "127.0.0.2"}, "net"),
        ({"headers": {"Cookie": "a=1; beta=yes"}}, "cookie"),
        ({"headers": {"X-Env": "canary"}}, "header"),
        ({"headers": {"X-Env": "prod"}}, "www"),
        ({"path": "/?v=2"}, "query"),
        ({"path": "/?v=3"}, "www"),
        ({"headers": {"Host": "a.wild.example"}}, "wild"),
        ({"headers": {"Host": "a.b.wild.example"}}, "www"),  # one label only
        ({"path": "/v12/items"}, "regex"),
    ],
)
def test_each_fetch_routes(routed, kwargs, expected):
    port, _, _ = routed
    status, headers, body = http_get(port, **kwargs)
    assert status == 200
    assert member_of(body) == expected
    assert headers["x-member"] == expected


def test_method_routing_and_forwarded_headers(routed):
    port, _, _ = routed
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("DELETE", "/thing", headers={"X-Forwarded-For": "203.0.113.9"})
    resp = conn.getresponse()
    data = json.loads(resp.read())
    conn.close()
    assert data["member"] == "method"
    headers = {k.lower(): v for k, v in data["headers"]}
    assert headers["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert data["http_version"] == "1.1"


def test_each_request_on_one_keepalive_connection_is_routed_on_its_own(routed):
    port, ms, _ = routed
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    seen = []
    for host, path in [("x", "/"), ("api.example.com", "/"), ("x", "/static/a"), ("x", "/"), ("api.example.com", "/z")]:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        seen.append(member_of(resp.read()))
    sock = conn.sock
    conn.close()
    assert seen == ["www", "api", "static", "www", "api"]
    assert sock is not None  # the same client connection carried all five


def test_member_connections_are_reused(members, engine):
    m = members("solo")
    port = free_port()
    engine(spec_with([{"name": "web", "bind": f"127.0.0.1:{port}", "protocol": "http", "default_pool": "p"}], [pool("p", m)]), workers=1)
    for _ in range(20):
        status, _, body = http_get(port)  # a new client connection every time
        assert status == 200
    assert m.requests == 20
    assert m.accepted == 1, "member connections should be pooled and reused across client connections"


def pipelined_answers(port: int, *writes: bytes) -> list[dict]:
    """Send ``writes`` on one connection, read until the engine closes it: the members'
    JSON answers, in the order they came (the last request asks to close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        for data in writes:
            s.sendall(data)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return [json.loads(part.split(b"\r\n\r\n", 1)[1].split(b"HTTP/1.1")[0]) for part in data.split(b"HTTP/1.1 200")[1:]]


def test_pipelined_requests_answered_in_order(routed):
    port, _, _ = routed
    reqs = b"".join(
        f"GET /p{i} HTTP/1.1\r\nHost: {'api.example.com' if i % 2 else 'x'}\r\n\r\n".encode() for i in range(6)
    )
    answers = pipelined_answers(port, reqs + b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert [a["target"] for a in answers] == [f"/p{i}" for i in range(6)] + ["/last"]


def test_pipelined_requests_with_bodies_across_reads_are_answered_in_order(routed):
    # Requests with bodies (each a head, data and an end: several events waiting their
    # turn), sent in two writes cut inside a body, then more than one read's worth.
    port, _, _ = routed
    reqs = b"".join(
        b"POST /b%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (i, i * 10) + b"x" * (i * 10)
        for i in range(1, 41)
    ) + b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    cut = reqs.index(b"/b3 ") + 60  # inside the third request's body
    answers = pipelined_answers(port, reqs[:cut], reqs[cut:])
    assert [(a["target"], a["body_bytes"]) for a in answers] == [(f"/b{i}", i * 10) for i in range(1, 41)] + [("/last", 0)]


def test_curl_routes_by_host_and_cookie(routed):
    port, _, _ = routed
    out = subprocess.run(
        ["curl", "-s", "--resolve", f"api.example.com:{port}:127.0.0.1", f"http://api.example.com:{port}/x"],
        capture_output=True, check=True, timeout=20,
    ).stdout
    # hdr(host) sees the raw header "api.example.com:PORT": haproxy semantics, so no match
    assert member_of(out) == "www"
    out = subprocess.run(["curl", "-s", "-b", "beta=1", f"http://127.0.0.1:{port}/"], capture_output=True, check=True, timeout=20).stdout
    assert member_of(out) == "cookie"


def test_tcp_listener_proxies_bytes_by_source(members, engine):
    inside, outside = members("inside"), members("outside")
    port = free_port()
    spec = spec_with(
        [{"name": "l4", "bind": f"127.0.0.1:{port}", "protocol": "tcp",
          "acls": [{"name": "inside", "condition": "src 127.0.0.3", "pool": "inside"}], "default_pool": "outside"}],
        [pool("inside", inside), pool("outside", outside)],
    )
    engine(spec)
    _, headers, body = http_get(port, source="127.0.0.3")
    assert member_of(body) == "inside"
    _, headers, body = http_get(port)
    assert member_of(body) == "outside"
    # L4: no header rewriting happened
    assert "x-forwarded-for" not in {k.lower() for k, _ in json.loads(body)["headers"]}


def test_redirect_listener_keeps_path_and_query(engine, members):
    port = free_port()
    spec = spec_with(
        [{"name": "r", "bind": f"127.0.0.1:{port}", "protocol": "http", "redirect": {"code": 308, "scheme": "https", "port": 8443}}],
        [],
    )
    engine(spec)
    status, headers, _ = http_get(port, "/a/b?c=d&e=f", headers={"Host": "shop.example.com:80"})
    assert status == 308
    assert headers["location"] == "https://shop.example.com:8443/a/b?c=d&e=f"


def test_ipv6_listener_and_member(members, engine):
    m = members("v6", host="::1")
    port = free_port("::1")
    engine(spec_with([{"name": "web6", "bind": f"[::1]:{port}", "protocol": "http", "default_pool": "p"}], [pool("p", m)]))
    status, _, body = http_get(port, host="::1")
    data = json.loads(body)
    assert data["member"] == "v6"
    assert dict((k.lower(), v) for k, v in data["headers"])["x-forwarded-for"] == "::1"


def test_backup_member_serves_when_primaries_in_maint(members, engine):
    prim, backup = members("prim"), members("backup")
    port = free_port()
    spec = spec_with(
        [{"name": "web", "bind": f"127.0.0.1:{port}", "protocol": "http", "default_pool": "p"}],
        [{"name": "p", "members": [
            {"name": "prim", "address": prim.address, "admin_state": "maint"},
            {"name": "backup", "address": backup.address, "backup": True}]}],
    )
    eng = engine(spec)
    assert member_of(http_get(port)[2]) == "backup"
    spec["pools"][0]["members"][0]["admin_state"] = "enabled"
    eng.reload(spec)
    assert {member_of(http_get(port)[2]) for _ in range(4)} == {"prim"}


def test_cookie_persistence_inserts_and_sticks(members, engine):
    a, b = members("a"), members("b")
    port = free_port()
    spec = spec_with(
        [{"name": "web", "bind": f"127.0.0.1:{port}", "protocol": "http", "default_pool": "p"}],
        [pool("p", a, b, persistence={"type": "cookie", "name": "SRV"})],
    )
    engine(spec)
    status, headers, body = http_get(port)
    first = member_of(body)
    assert headers["set-cookie"].startswith(f"SRV={first};")
    assert 'no-cache="set-cookie"' in headers["cache-control"]
    for _ in range(5):
        status, headers, body = http_get(port, headers={"Cookie": f"SRV={first}; other=1"})
        assert member_of(body) == first
        assert "set-cookie" not in headers
        seen = dict((k.lower(), v) for k, v in json.loads(body)["headers"])
        assert seen["cookie"] == "other=1"  # indirect: our cookie is not passed to the member
