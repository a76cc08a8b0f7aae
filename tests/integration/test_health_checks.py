"""Health checks against real sockets on 127.0.0.1: check_once for every type and
outcome (on asyncio and on uvloop), and the HealthMonitor with members the test
stops and starts. Every wait is on an event or a queue, never a fixed sleep."""

from __future__ import annotations

import asyncio
import queue
import socket
import ssl
from typing import Any, Callable, Iterator

import pytest
import uvloop

from lbcore.proxy.health import CheckResult, HealthMonitor, check_once
from lbcore.spec import HealthCheck, parse_spec
from tests import tlsgen
from tests.integration.harness import LoopThread, Member, free_port

# -- servers that misbehave on purpose ---------------------------------------------------------------


class Scripted:
    """A server on the test's loop thread that answers every connection one way:

    silent     accepts, reads, never answers (a hung member)
    garbage    says something that is not HTTP, then waits
    close      reads the request head, closes without answering
    partial    half a response head, then closes
    badline    a malformed status line
    interim    a 100 Continue, then 204
    bighead    a 200 whose head is over 16 KiB
    answer     records the request head; answers with the status in /status/NNN, else 200
    keepalive  answers 200 with a Content-Length body and keeps the connection open; puts
               how the client ended it ("eof" or "reset") in ``endings``
    """

    def __init__(self, loops: LoopThread, mode: str, tls: ssl.SSLContext | None = None) -> None:
        self.loops = loops
        self.mode = mode
        self.tls = tls
        self.heads: list[bytes] = []
        self.endings: queue.Queue[str] = queue.Queue()
        self.writers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.base_events.Server | None = None
        self.port = 0

    def start(self) -> "Scripted":
        async def start() -> None:
            self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
            self.port = self.server.sockets[0].getsockname()[1]

        self.loops.run(start())
        return self

    def stop(self) -> None:
        async def stop() -> None:
            if self.server is not None:
                self.server.close()
            for writer in list(self.writers):
                writer.transport.abort()

        self.loops.run(stop())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            await self._answer(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "silent":
            await reader.read()
            return
        if self.mode == "garbage":
            writer.write(b"SSH-2.0-OpenSSH_9.6\r\n")
            await reader.read()
            return
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        replies = {
            "close": b"",
            "partial": b"HTTP/1.1 200 OK\r\nContent-Ty",
            "badline": b"HTTP/1.1 2OO OK\r\n\r\n",
            "interim": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
            "bighead": b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 20000 + b"\r\n\r\n",
        }
        if self.mode in replies:
            writer.write(replies[self.mode])
        elif self.mode == "keepalive":
            body = b"" if head.startswith(b"HEAD ") else b"hello"
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n" + body)
            try:
                rest = await reader.read()
                self.endings.put("eof" if rest == b"" else f"data {rest!r}")
            except ConnectionResetError:
                self.endings.put("reset")
        else:
            target = head.split(b" ", 2)[1]
            status = int(target.rsplit(b"/", 1)[1]) if target.startswith(b"/status/") else 200
            writer.write(b"HTTP/1.1 %d X\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello" % status)
        await writer.drain()


@pytest.fixture(scope="module")
def loops() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.stop()
    lt.loop.close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    ca = tlsgen.make_ca()
    leaf = tlsgen.issue(ca, ["health.example.com"], key_type="ecdsa")
    return tlsgen.write_pair(tmp_path_factory.mktemp("certs"), "health", leaf, chain=[ca])


class TlsServerContext:
    """A server context that records the SNI each handshake asked for."""

    def __init__(self, certificate: tuple[str, str]) -> None:
        self.names: list[str | None] = []
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(*certificate)
        self.context.sni_callback = lambda sock, name, ctx: self.names.append(name)  # type: ignore[assignment,misc]


@pytest.fixture
def servers(loops: LoopThread, certificate: tuple[str, str]) -> Iterator[Callable[..., Any]]:
    """servers(mode, tls=False) -> a started Scripted (its ``sni`` lists SNI names seen);
    servers("member") -> a harness Member."""
    started: list[Any] = []

    def make(mode: str, tls: bool = False) -> Any:
        if mode == "member":
            server: Any = Member(loops, "m").start()
        else:
            context = TlsServerContext(certificate) if tls else None
            server = Scripted(loops, mode, context.context if context else None).start()
            server.sni = context.names if context else []
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A port whose accept queue is full: the kernel drops new SYNs, a connect hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port))
    yield port
    filler.close()
    listener.close()


@pytest.fixture(params=["asyncio", "uvloop"])
def probe(request: pytest.FixtureRequest) -> Callable[..., CheckResult]:
    """probe(port, type, **check fields) runs check_once on a fresh loop of each kind."""
    factory = asyncio.new_event_loop if request.param == "asyncio" else uvloop.new_event_loop

    def run(port: int, kind: str = "http", **fields: Any) -> CheckResult:
        hc = HealthCheck(kind, **{"timeout": 0.3, **fields})
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(check_once(hc, "127.0.0.1", port))

    return run


def outcome(result: CheckResult) -> tuple[bool, str, int | None, str]:
    return result.ok, result.code, result.status, result.detail


# -- check_once: tcp ---------------------------------------------------------------------------------------


def test_tcp(probe: Callable[..., CheckResult], servers: Callable[..., Any], full_backlog: int) -> None:
    member = servers("member")
    assert outcome(probe(member.port, "tcp")) == (True, "L4OK", None, "connected")
    assert outcome(probe(free_port(), "tcp")) == (False, "L4CON", None, "connection refused")
    assert outcome(probe(full_backlog, "tcp")) == (False, "L4TOUT", None, "no connection within 300ms")
    silent = servers("silent")
    assert probe(silent.port, "tcp").code == "L4OK"  # tcp only connects


# -- check_once: http ---------------------------------------------------------------------------------------


def test_http_statuses(probe: Callable[..., CheckResult], servers: Callable[..., Any]) -> None:
    member = servers("member")
    result = probe(member.port)
    assert outcome(result) == (True, "L7OK", 200, "HTTP 200")
    assert result.duration >= 0 and result.at > 0
    assert outcome(probe(member.port, path="/status/204")) == (True, "L7OK", 204, "HTTP 204")
    assert outcome(probe(member.port, path="/status/503")) == (False, "L7STS", 503, "HTTP 503 not in 200-399")
    assert outcome(probe(member.port, path="/status/404")) == (False, "L7STS", 404, "HTTP 404 not in 200-399")
    assert probe(member.port, path="/status/302", expect="200-299,302").ok
    assert outcome(probe(member.port, path="/status/301", expect="200-299,302")) == (
        False, "L7STS", 301, "HTTP 301 not in 200-299,302")
    assert probe(member.port, path="/status/503", expect="503").ok
    assert probe(member.port, method="HEAD").ok
    assert member.requests == 8


def test_http_failures(probe: Callable[..., CheckResult], servers: Callable[..., Any], full_backlog: int) -> None:
    assert outcome(probe(free_port())) == (False, "L4CON", None, "connection refused")
    assert outcome(probe(full_backlog)) == (False, "L4TOUT", None, "no connection within 300ms")
    assert outcome(probe(servers("silent").port)) == (False, "L7TOUT", None, "no HTTP response within 300ms")
    assert outcome(probe(servers("garbage").port)) == (False, "L7RSP", None, "not an HTTP response: 'SSH-2.0-OpenSSH_9.6\\r'")
    assert outcome(probe(servers("close").port)) == (False, "L7RSP", None, "connection closed without a response")
    assert outcome(probe(servers("partial").port)) == (
        False, "L7RSP", None, "connection closed in the response head: 'HTTP/1.1 200 OK\\r'")
    assert outcome(probe(servers("badline").port)) == (False, "L7RSP", None, "bad status line: 'HTTP/1.1 2OO OK\\r'")
    assert outcome(probe(servers("bighead").port)) == (False, "L7RSP", None, "response head over 16 KiB")


def test_http_interim_response_is_skipped(probe: Callable[..., CheckResult], servers: Callable[..., Any]) -> None:
    assert outcome(probe(servers("interim").port)) == (True, "L7OK", 204, "HTTP 204")


def test_http_close_is_orderly_after_the_body(probe: Callable[..., CheckResult], servers: Callable[..., Any]) -> None:
    """A member that keeps the connection open despite Connection: close: the probe
    reads the body to its Content-Length and closes (the member sees an end of
    stream, not a reset, as it would if the probe gave up at its deadline)."""
    server = servers("keepalive")
    assert outcome(probe(server.port)) == (True, "L7OK", 200, "HTTP 200")
    assert server.endings.get(timeout=5) == "eof"
    assert outcome(probe(server.port, method="HEAD")) == (True, "L7OK", 200, "HTTP 200")  # HEAD: no body to wait for
    assert server.endings.get(timeout=5) == "eof"


def test_http_request_shape(probe: Callable[..., CheckResult], servers: Callable[..., Any]) -> None:
    server = servers("answer")
    assert probe(server.port, path="/healthz?full=1", method="HEAD", host="app.example.com").ok
    assert probe(server.port).ok
    first, second = server.heads
    lines = first.decode().split("\r\n")
    assert lines[0] == "HEAD /healthz?full=1 HTTP/1.1"
    assert "Host: app.example.com" in lines and "Connection: close" in lines
    assert any(line.startswith("User-Agent: lbcore-health/") for line in lines)
    assert f"Host: 127.0.0.1:{server.port}" in second.decode().split("\r\n")


# -- check_once: https and tls-hello -------------------------------------------------------------------------


def test_https(probe: Callable[..., CheckResult], servers: Callable[..., Any]) -> None:
    server = servers("answer", tls=True)
    assert outcome(probe(server.port, "https", host="health.example.com")) == (True, "L7OK", 200, "HTTP 200")
    assert outcome(probe(server.port, "https", path="/status/500")) == (False, "L7STS", 500, "HTTP 500 not in 200-399")
    assert server.sni == ["health.example.com", None]  # SNI from host; none for an address
    assert server.heads[0].startswith(b"GET / HTTP/1.1\r\nHost: health.example.com\r\n")
    assert f"Host: 127.0.0.1:{server.port}\r\n".encode() in server.heads[1]


def test_https_failures(probe: Callable[..., CheckResult], servers: Callable[..., Any], full_backlog: int) -> None:
    plain = servers("member")
    result = probe(plain.port, "https")
    assert (result.ok, result.code, result.status) == (False, "L6RSP", None)
    assert "TLS" in result.detail
    assert probe(free_port(), "https").code == "L4CON"
    assert probe(full_backlog, "https").code == "L4TOUT"
    assert outcome(probe(servers("silent").port, "https")) == (False, "L6TOUT", None, "no TLS handshake within 300ms")
    assert outcome(probe(servers("silent", tls=True).port, "https")) == (
        False, "L7TOUT", None, "no HTTP response within 300ms")
    assert probe(servers("garbage", tls=True).port, "https").code == "L7RSP"


def test_tls_hello(probe: Callable[..., CheckResult], servers: Callable[..., Any], full_backlog: int) -> None:
    server = servers("silent", tls=True)  # a handshake is all it takes
    result = probe(server.port, "tls-hello", host="health.example.com:8443")
    assert (result.ok, result.code, result.status) == (True, "L6OK", None)
    assert result.detail in ("TLS handshake done (TLSv1.3)", "TLS handshake done (TLSv1.2)")
    assert server.sni == ["health.example.com"]
    plain = probe(servers("member").port, "tls-hello")
    assert (plain.ok, plain.code) == (False, "L6RSP") and "TLS" in plain.detail
    assert outcome(probe(servers("silent").port, "tls-hello")) == (False, "L6TOUT", None, "no TLS handshake within 300ms")
    assert outcome(probe(free_port(), "tls-hello")) == (False, "L4CON", None, "connection refused")
    assert probe(full_backlog, "tls-hello").code == "L4TOUT"


# -- the monitor with real members ----------------------------------------------------------------------------


class Watch:
    """A HealthMonitor on the members' loop; its changes arrive in a queue with the
    member's counters as they were at that moment."""

    def __init__(self, loops: LoopThread) -> None:
        self.loops = loops
        self.changes: queue.Queue[tuple[str, str, bool, str | None, int, int]] = queue.Queue()
        self.monitor = HealthMonitor(loops.loop, self.on_change)

    def on_change(self, pool: str, member: str, up: bool, last: CheckResult | None) -> None:
        health = self.monitor.states().get((pool, member))
        counts = (health.consecutive_ok, health.consecutive_fail) if health else (0, 0)
        self.changes.put((pool, member, up, last.code if last else None, *counts))

    def call(self, method: str, *args: Any) -> Any:
        async def call() -> Any:
            return getattr(self.monitor, method)(*args)

        return self.loops.run(call())

    def next(self) -> tuple[str, str, bool, str | None, int, int]:
        return self.changes.get(timeout=10)

    def close(self) -> None:
        self.loops.run(self.monitor.close())


@pytest.fixture
def watch(loops: LoopThread) -> Iterator[Watch]:
    w = Watch(loops)
    yield w
    w.close()


def spec_of(members: dict[str, Member | str], health: dict[str, Any] | None = None, outlier: dict[str, Any] | None = None,
            pool: str = "www") -> dict[str, Any]:
    data: dict[str, Any] = {"name": pool, "members": [
        {"name": name, "address": m if isinstance(m, str) else m.address} for name, m in members.items()]}
    if health is not None:
        data["health"] = {"type": "http", "interval": "50ms", "timeout": "50ms", "rise": 2, "fall": 3, **health}
    if outlier is not None:
        data["outlier"] = outlier
    return data


def test_member_killed_goes_down_after_fall_and_back_after_rise(loops: LoopThread, watch: Watch) -> None:
    m1, m2 = Member(loops, "m1").start(), Member(loops, "m2").start()
    try:
        watch.call("apply", parse_spec({"pools": [spec_of({"m1": m1, "m2": m2}, health={})]}))
        m1.stop()
        assert watch.next() == ("www", "m1", False, "L4CON", 0, 3)
        m1 = Member(loops, "m1", port=m1.port).start()
        assert watch.next() == ("www", "m1", True, "L7OK", 2, 0)
        states = watch.call("states")
        assert set(states) == {("www", "m1"), ("www", "m2")}
        assert states[("www", "m2")].up and states[("www", "m2")].last.code == "L7OK"
        assert m2.requests > 0 and watch.changes.empty()
    finally:
        m1.stop()
        m2.stop()


def test_reload_keeps_state_and_moves_a_member(loops: LoopThread, watch: Watch) -> None:
    m1, m2 = Member(loops, "m1").start(), Member(loops, "m2").start()
    try:
        spec = parse_spec({"pools": [spec_of({"m1": m1, "m2": m2}, health={})]})
        watch.call("apply", spec)
        m1.stop()
        assert watch.next()[:3] == ("www", "m1", False)
        before = watch.call("states")
        watch.call("apply", spec)
        after = watch.call("states")
        assert all(after[key] is before[key] for key in before)
        # m1 now points at m2's server: a new server, UP at once; both go down with it.
        watch.call("apply", parse_spec({"pools": [spec_of({"m1": m2.address, "m2": m2}, health={"rise": 1})]}))
        assert watch.next() == ("www", "m1", True, None, 0, 0)
        m2.stop()
        downs = {watch.next()[:4], watch.next()[:4]}
        assert downs == {("www", "m1", False, "L4CON"), ("www", "m2", False, "L4CON")}
    finally:
        m1.stop()
        m2.stop()


def test_disable_and_enable_health(loops: LoopThread, watch: Watch) -> None:
    m1 = Member(loops, "m1").start()
    try:
        watch.call("apply", parse_spec({"pools": [spec_of({"m1": m1}, health={"fall": 2})]}))
        m1.stop()
        assert watch.next() == ("www", "m1", False, "L4CON", 0, 2)
        watch.call("set_enabled", "www", "m1", False)
        assert watch.next() == ("www", "m1", True, "L4CON", 0, 0)
        watch.call("set_enabled", "www", "m1", True)  # from UP again: fall failures to go down
        assert watch.next() == ("www", "m1", False, "L4CON", 0, 2)
        m1 = Member(loops, "m1", port=m1.port).start()
        assert watch.next() == ("www", "m1", True, "L7OK", 2, 0)
    finally:
        m1.stop()


def test_passive_ejection(loops: LoopThread, watch: Watch) -> None:
    m1, m2 = Member(loops, "m1").start(), Member(loops, "m2").start()
    try:
        watch.call("apply", parse_spec({"pools": [
            spec_of({"m1": m1}, health={"interval": "100ms", "timeout": "100ms"}, outlier={"ejection_time": "1h"}),
            spec_of({"m2": m2}, outlier={"consecutive_5xx": 5, "ejection_time": "100ms"}, pool="api"),
        ]}))
        # With an active check: down at once, back after `rise` passing checks.
        watch.call("report_passive", "www", "m1", "5 connection errors in a row")
        assert watch.next() == ("www", "m1", False, "HANA", 0, 1)
        assert watch.next() == ("www", "m1", True, "L7OK", 2, 0)
        # Without one: down at once, back after the ejection time.
        watch.call("report_passive", "api", "m2", "5 5xx responses in a row")
        assert watch.next() == ("api", "m2", False, "HANA", 0, 1)
        assert watch.next() == ("api", "m2", True, "HANA", 0, 0)
        assert m2.requests == 0  # nobody checks it
    finally:
        m1.stop()
        m2.stop()
