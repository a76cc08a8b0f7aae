"""The haproxy driver against real haproxy: routing, runtime API, rejected revisions, stats.

Requests go through haproxy to test members (JSON naming the member) with curl and
http.client, from 127.0.0.x source addresses where the client address matters.
Waits are on conditions (a log line, a stats socket answer), never on sleeps.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess

import pytest

from lbcore.control.drivers.haproxy import ApplyError
from lbcore.spec import parse_spec
from tests.integration.harness import free_port, http_get
from tests.system.conftest import needs_haproxy

pytestmark = needs_haproxy


def member_of(port: int, path: str = "/", **kw) -> str:
    status, _headers, body = http_get(port, path, **kw)
    assert status == 200, (status, body)
    return json.loads(body)["member"]


def curl(port: int, path: str = "/", *args: str) -> dict:
    done = subprocess.run(
        ["curl", "-sS", "--max-time", "10", *args, f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def base_spec(port: int, m: dict, **listener) -> dict:
    return {
        "version": 1,
        "listeners": [{
            "name": "web",
            "bind": f"127.0.0.1:{port}",
            "acls": [
                {"name": "api", "condition": "host api.example.com", "pool": "api"},
                {"name": "static", "condition": {"path": {"prefix": "/static/"}}, "pool": "static"},
                {"name": "office", "condition": "src 127.0.0.2 || req.cook(beta) -m found", "pool": "static"},
            ],
            "default_pool": "www",
            "add_headers": {"X-Served-By": "haproxy via lbcore"},
            **listener,
        }],
        "pools": [
            {"name": "api", "members": [{"name": "a1", "address": m["a1"].address}]},
            {"name": "static", "members": [{"name": "s1", "address": m["s1"].address}]},
            {"name": "www", "members": [
                {"name": "w1", "address": m["w1"].address},
                {"name": "w2", "address": m["w2"].address},
            ]},
        ],
    }


@pytest.fixture
def site(members):
    return {name: members(name) for name in ("a1", "s1", "w1", "w2")}


def test_routes_by_host_path_client_and_cookie(site, haproxy_driver):
    port = free_port()
    haproxy_driver(base_spec(port, site))
    assert curl(port, "/", "-H", "Host: API.Example.com.:8080")["member"] == "a1"
    assert curl(port, "/static/app.js")["member"] == "s1"
    assert curl(port, "/", "--interface", "127.0.0.2")["member"] == "s1"
    assert curl(port, "/", "-b", "beta=1")["member"] == "s1"
    seen = {curl(port, "/", "--interface", "127.0.0.3")["member"] for _ in range(4)}
    assert seen == {"w1", "w2"}, "round robin over the default pool"
    echoed = dict(curl(port, "/", "--interface", "127.0.0.4")["headers"])
    lowered = {k.lower(): v for k, v in echoed.items()}
    assert lowered["x-served-by"] == "haproxy via lbcore"
    assert lowered["x-forwarded-for"] == "127.0.0.4"
    assert lowered["x-forwarded-proto"] == "http"


def test_member_only_revision_goes_through_the_runtime_api(site, haproxy_driver):
    port = free_port()
    spec = base_spec(port, site)
    driver = haproxy_driver(spec)
    worker = driver.worker_pid
    spec["pools"][2]["members"][1]["admin_state"] = "drain"
    spec["pools"][2]["members"][0]["weight"] = 7
    result = driver.apply(parse_spec(spec))
    assert result.action == "runtime"
    assert "set server www/w2 state drain" in result.commands
    assert "set server www/w1 weight 7" in result.commands
    assert driver.worker_pid == worker, "no reload"
    assert {member_of(port) for _ in range(4)} == {"w1"}, "a drained member takes no new sessions"
    members = {m["name"]: m for m in driver.stats()["pools"][2]["members"]}
    assert members["w2"]["admin"] == "drain" and members["w2"]["status"] == "DRAIN"
    assert members["w1"]["weight"] == 7
    assert os.path.basename(os.path.realpath(driver.current)) == driver.revision


def test_runtime_state_survives_a_reload(site, haproxy_driver):
    port = free_port()
    spec = base_spec(port, site)
    driver = haproxy_driver(spec)
    driver.set_member("www", "w1", state="maint")
    driver.set_member("www", "w2", weight=3)
    spec["listeners"][0]["acls"].append({"name": "new", "condition": "path_beg /new", "pool": "api"})
    before = driver.worker_pid
    assert driver.apply(parse_spec(spec)).action == "reload"
    assert driver.worker_pid != before
    assert member_of(port, "/new/x") == "a1", "the new revision routes"
    state = {m["name"]: m for m in driver.stats()["pools"][2]["members"]}
    assert state["w1"]["status"] == "MAINT", "runtime maint kept across the reload"
    assert state["w2"]["weight"] == 3, "runtime weight kept across the reload"
    assert {member_of(port) for _ in range(4)} == {"w2"}
    assert "www 1 w1" in driver.show("show servers state")


def test_rejected_revisions_leave_the_old_one_running(site, haproxy_driver, tmp_path):
    port = free_port()
    spec = base_spec(port, site)
    driver = haproxy_driver(spec)
    running = driver.revision
    # 1. The renderer refuses: the field is named.
    bad = base_spec(port, site, access_log={"format": "json"})
    with pytest.raises(ApplyError, match=r"listeners\[web\]\.access_log\.format"):
        driver.apply(parse_spec(bad))
    # 2. haproxy -c refuses (a CA file that does not exist).
    bad = base_spec(port, site)
    bad["pools"][0]["tls"] = {"verify": "required", "ca": str(tmp_path / "missing-ca.pem")}
    with pytest.raises(ApplyError, match="haproxy -c refused") as caught:
        driver.apply(parse_spec(bad))
    assert "missing-ca.pem" in caught.value.details
    # 3. The new process cannot bind: the reload fails, the old worker serves on.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        bad = base_spec(port, site)
        bad["listeners"].append({"name": "other", "bind": f"127.0.0.1:{busy.getsockname()[1]}", "default_pool": "www"})
        with pytest.raises(ApplyError, match="refused revision") as caught:
            driver.apply(parse_spec(bad))
        assert "Address already in use" in caught.value.details or "cannot bind" in caught.value.details
    assert driver.revision == running
    assert os.path.basename(os.path.realpath(driver.current)) == running
    assert member_of(port, "/static/x") == "s1"
    # And a good revision still applies afterwards.
    spec["listeners"][0]["acls"].insert(0, {"name": "first", "condition": "path_beg /static/", "pool": "api"})
    assert driver.apply(parse_spec(spec)).action == "reload"
    assert member_of(port, "/static/x") == "a1"


def test_stats_in_lbcores_structure(site, haproxy_driver):
    from lbcore.proxy.state import MemberBook
    from lbcore.proxy.stats import Aggregate

    port = free_port()
    spec = base_spec(port, site)
    spec["pools"][2]["health"] = {"type": "http", "path": "/", "interval": "200ms", "timeout": "100ms", "rise": 1, "fall": 1}
    driver = haproxy_driver(spec)
    for _ in range(5):
        member_of(port, "/static/a")
    for _ in range(3):
        member_of(port, "/", headers={"Host": "api.example.com"})
    stats = driver.stats()
    web = stats["listeners"][0]
    assert web["name"] == "web" and web["requests"] == 8 and web["responses"]["2xx"] == 8
    pools = {p["name"]: p for p in stats["pools"]}
    assert pools["static"]["requests"] == 5 and pools["static"]["members"][0]["requests"] == 5
    assert pools["api"]["members"][0]["responses"]["2xx"] == 3
    assert pools["www"]["status"] == "ONLINE" and pools["api"]["status"] == "NO_MONITOR"
    # The same shape as the native engine's snapshot.
    book = MemberBook(lambda: None)
    book.apply(parse_spec(spec))
    native = book.snapshot(Aggregate(), workers=1)
    assert set(stats) == set(native)
    assert set(stats["listeners"][0]) == set(native["listeners"][0])
    assert set(stats["pools"][0]) == set(native["pools"][0])
    assert set(stats["pools"][2]["members"][0]) == set(native["pools"][2]["members"][0])
    # A member that stops answering is marked down by the check (fall 1).
    mark = driver.log_mark()
    site["w2"].stop()
    driver.wait_for_log(r"Server www/w2 is DOWN", mark, timeout=15)
    members = {m["name"]: m for m in driver.stats()["pools"][2]["members"]}
    assert members["w2"]["status"] == "DOWN" and members["w2"]["operating_status"] == "ERROR"
    assert members["w2"]["check"]["code"]
    assert driver.stats()["pools"][2]["status"] == "DEGRADED"
    assert {member_of(port) for _ in range(4)} == {"w1"}


def raw_status(port: int, head: str, body: bytes = b"") -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode("latin-1") + body)
        response = http.client.HTTPResponse(sock)
        response.begin()
        response.read()
        return response.status


def test_request_limits_answer_as_lbcore_does(site, haproxy_driver, native_engine):
    """The same boundary requests to lbcore's engine and to haproxy: the same status."""
    limits = {"max_request_line": 100, "max_header_bytes": 300, "max_headers": 6, "max_body": 20}
    native_port, haproxy_port = free_port(), free_port()
    native_engine(base_spec(native_port, site, limits=limits))
    haproxy_driver(base_spec(haproxy_port, site, limits=limits))

    def head(port: int, target: str = "/", fields: list[tuple[str, str]] = (), method: str = "GET") -> str:
        lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", *(f"{k}: {v}" for k, v in fields)]
        return "\r\n".join(lines) + "\r\n\r\n"

    def cases(port: int) -> list[tuple[str, bytes]]:
        host_field = len("Host") + len(f"127.0.0.1:{port}") + 4
        pad = 300 - host_field - len("X-Pad") - 4  # the header section exactly at the limit
        return [
            (head(port, "/" + "a" * (100 - 12 - 3 - 1)), b""),  # request line of 100 bytes
            (head(port, "/" + "a" * (100 - 12 - 3)), b""),  # 101
            (head(port, fields=[("X-Pad", "p" * pad)]), b""),
            (head(port, fields=[("X-Pad", "p" * (pad + 1))]), b""),
            (head(port, fields=[(f"X-{i}", "1") for i in range(5)]), b""),  # 6 fields with Host
            (head(port, fields=[(f"X-{i}", "1") for i in range(6)]), b""),  # 7
            (head(port, method="POST", fields=[("Content-Length", "20")]), b"b" * 20),
            (head(port, method="POST", fields=[("Content-Length", "21")]), b"b" * 21),
        ]

    native = [raw_status(native_port, h, b) for h, b in cases(native_port)]
    haproxy = [raw_status(haproxy_port, h, b) for h, b in cases(haproxy_port)]
    assert native == [200, 414, 200, 431, 200, 431, 200, 413]
    assert haproxy == native


def test_redirects_answer_as_lbcore_does(site, haproxy_driver, native_engine):
    def spec(ports: tuple[int, int]) -> dict:
        return {
            "version": 1,
            "listeners": [
                {"name": "to-https", "bind": f"127.0.0.1:{ports[0]}", "redirect": {"code": 301, "scheme": "https"}},
                {"name": "moved", "bind": f"127.0.0.1:{ports[1]}",
                 "redirect": {"code": 308, "host": "www.example.com", "port": 8443}},
            ],
            "pools": [],
        }

    def location(port: int, head: str) -> tuple[int, str]:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(head.encode())
            response = http.client.HTTPResponse(sock)
            response.begin()
            response.read()
            return response.status, response.getheader("Location") or ""

    native_ports, haproxy_ports = (free_port(), free_port()), (free_port(), free_port())
    native_engine(spec(native_ports))
    haproxy_driver(spec(haproxy_ports))
    heads = [
        "GET /a/b?c=1 HTTP/1.1\r\nHost: Example.COM:8080\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: www.example.com.\r\n\r\n",
        "GET /no-host HTTP/1.0\r\n\r\n",
    ]
    for head in heads:
        for native_port, haproxy_port in zip(native_ports, haproxy_ports):
            assert location(haproxy_port, head) == location(native_port, head), head
    assert location(haproxy_ports[0], heads[0]) == (301, "https://example.com/a/b?c=1")
    assert location(haproxy_ports[1], heads[0]) == (308, "http://www.example.com:8443/a/b?c=1")


def test_tcp_and_passthrough_listeners_route_by_client_and_sni(site, certs, loops, haproxy_driver):
    import asyncio
    import ssl

    async def tls_member(name: str, cert: tuple[str, str]) -> int:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*cert)

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(f"HTTP/1.1 200 OK\r\nX-Member: {name}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
        servers.append(server)
        return server.sockets[0].getsockname()[1]

    servers: list = []
    api_port = loops.run(tls_member("tls-api", certs["api"]))
    www_port = loops.run(tls_member("tls-www", certs["www"]))
    tcp_port, tls_port = free_port(), free_port()
    driver = haproxy_driver({
        "version": 1,
        "listeners": [
            {"name": "tcp", "bind": f"127.0.0.1:{tcp_port}", "protocol": "tcp",
             "acls": [{"name": "office", "condition": "src 127.0.0.2", "pool": "static"}], "default_pool": "www"},
            {"name": "pass", "bind": f"127.0.0.1:{tls_port}", "protocol": "tls-passthrough",
             "acls": [{"name": "api", "condition": "ssl_sni API.example.com", "pool": "tls-api"}], "default_pool": "tls-www"},
        ],
        "pools": [
            {"name": "static", "members": [{"name": "s1", "address": site["s1"].address}]},
            {"name": "www", "members": [{"name": "w1", "address": site["w1"].address}]},
            {"name": "tls-api", "members": [{"name": "a", "address": f"127.0.0.1:{api_port}"}]},
            {"name": "tls-www", "members": [{"name": "w", "address": f"127.0.0.1:{www_port}"}]},
        ],
    })
    assert member_of(tcp_port, source="127.0.0.2") == "s1"
    assert member_of(tcp_port, source="127.0.0.3") == "w1"
    # The runtime API reaches a pool's tcp backend (www:tcp) too.
    assert driver.set_member("www", "w1", weight=9) == ["set server www:tcp/w1 weight 9"]
    assert {p["name"]: p for p in driver.stats()["pools"]}["www"]["members"][0]["weight"] == 9

    def through(sni: str) -> tuple[str, str]:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(str(certs["ca"]))
        raw = socket.create_connection(("127.0.0.1", tls_port), timeout=10)
        with context.wrap_socket(raw, server_hostname=sni) as sock:
            subject = dict(item[0] for item in sock.getpeercert()["subject"])["commonName"]
            sock.sendall(f"GET / HTTP/1.1\r\nHost: {sni}\r\n\r\n".encode())
            response = http.client.HTTPResponse(sock)
            response.begin()
            return subject, response.getheader("X-Member") or ""

    assert through("api.example.com") == ("api.example.com", "tls-api"), "routed by SNI, TLS end to end"
    assert through("www.example.com") == ("www.example.com", "tls-www")

    async def close_servers() -> None:
        # On the servers' own loop: Server.close from this thread races the loop's
        # own bookkeeping as the last member connection ends (asyncio is not
        # thread-safe), which once failed inside asyncio with a TypeError.
        for server in servers:
            server.close()

    loops.run(close_servers())
