"""Active health checks: one probe of one member (tcp, http, https, tls-hello).

Theory of operation
-------------------
A probe goes through up to three phases, each named by the layer it proves, as in
haproxy's check status: L4 (TCP connect), L6 (TLS handshake; https and tls-hello),
L7 (one HTTP request and its response head; http and https). The phases share one
deadline, ``hc.timeout`` from the start. Whichever phase is running when the deadline
passes gives the timeout code, an error gives that phase's failure code, and the last
phase of the check type, completed, gives the success code:

    phase  ok    timeout  failure
    L4     L4OK  L4TOUT   L4CON  refused, reset, unreachable
    L6     L6OK  L6TOUT   L6RSP  TLS handshake failed (or the peer hung up in it)
    L7     L7OK  L7TOUT   L7RSP  no response, or not HTTP/1.x
                          L7STS  a status not in ``hc.expect``

(The monitor adds HANA, haproxy's "health analyze" status, for passive ejections.)

The probe is a small asyncio Protocol rather than streams: it needs only a bounded
buffer, and ``loop.start_tls`` lets the TLS handshake be a phase of its own with its
own timeout code. After an HTTP verdict the probe reads and drops up to MAX_DRAIN
bytes of body until the member closes (the request says ``Connection: close``), so
the member sees an orderly close rather than a reset; a probe that failed aborts.
Checks are about liveness: certificates are not verified.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import re
import ssl
import time
from dataclasses import dataclass
from typing import Any

from lbcore import __version__
from lbcore.spec import HealthCheck, format_duration

__all__ = ["CHECK_CODES", "CheckResult", "check_once"]

CHECK_CODES = ("L4OK", "L4TOUT", "L4CON", "L6OK", "L6TOUT", "L6RSP", "L7OK", "L7STS", "L7TOUT", "L7RSP", "HANA")
# A response head larger than this is refused (h11's default max_incomplete_event_size;
# haproxy's default tune.bufsize is 16 KiB as well).
MAX_HEAD = 16384
# Body bytes read and dropped after the verdict before giving up on a clean close.
MAX_DRAIN = 65536
USER_AGENT = f"lbcore-health/{__version__}"

_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-5][0-9][0-9])(?:[ \t][^\r\n]*)?\r?\n")
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_CONTENT_LENGTH = re.compile(rb"\ncontent-length[ \t]*:[ \t]*([0-9]{1,18})[ \t]*\r?\n", re.IGNORECASE)
_WAITING = {"L4": "no connection", "L6": "no TLS handshake", "L7": "no HTTP response"}
_FAILURE = {"L4": "L4CON", "L6": "L6RSP", "L7": "L7RSP"}
_SUCCESS = frozenset({"L4OK", "L6OK", "L7OK"})


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check's outcome. ``code`` is one of CHECK_CODES, ``status`` the HTTP status
    when there was one, ``duration`` seconds to the verdict, ``at`` the ``time.time()``
    of the verdict, ``detail`` a short text for logs and the stats page."""

    ok: bool
    code: str
    status: int | None
    duration: float
    detail: str
    at: float

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "code": self.code, "status": self.status, "duration": self.duration,
                "detail": self.detail, "at": self.at}


class _Failed(Exception):
    """The member answered, but wrongly: ``code`` and ``detail`` say how."""

    def __init__(self, code: str, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status


class _ProbeProtocol(asyncio.Protocol):
    """Keeps what the member sends (or only counts it, when draining) and wakes the
    probe on data, end of stream or loss of the connection."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.draining = False
        self.drained = 0
        self.closed = False
        self.error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    def data_received(self, data: bytes) -> None:
        if self.draining:
            self.drained += len(data)
        else:
            self.buffer += data
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False  # close our side too

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        self.error = self.error or exc
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait(self) -> None:
        """Until more data, end of stream or loss (returns at once when closed)."""
        if self.closed:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None


@functools.cache
def _client_context(alpn: tuple[str, ...]) -> ssl.SSLContext:
    """One context per ALPN list, shared by every probe (building one costs ~ms)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def _server_name(hc: HealthCheck) -> str | None:
    """SNI: the check's host without a port; none for an address literal or no host."""
    if hc.host is None or hc.host.startswith("["):  # none, or an IPv6 literal
        return None
    name = hc.host.rsplit(":", 1)[0]
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name
    return None


def _host_header(hc: HealthCheck, host: str, port: int) -> str:
    if hc.host is not None:
        return hc.host
    literal = f"[{host}]" if ":" in host else host
    default = 443 if hc.type == "https" else 80
    return literal if port == default else f"{literal}:{port}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc.strerror or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__


def _shown(data: bytes) -> str:
    """A response that is not HTTP, as the stats page can show it."""
    first = bytes(data[:40]).split(b"\n", 1)[0]
    return repr(first.decode("latin-1"))


class _Probe:
    """One check of one member; ``run()`` gives the CheckResult."""

    def __init__(self, hc: HealthCheck, host: str, port: int) -> None:
        self.hc = hc
        self.host = host
        self.port = port
        self.phase = "L4"
        self.protocol = _ProbeProtocol()
        self.transport: asyncio.BaseTransport | None = None
        self.body_left: int | None = None  # body bytes after the head, when the head says
        self.loop = asyncio.get_running_loop()
        self.deadline = self.loop.time() + hc.timeout

    async def run(self) -> CheckResult:
        try:
            return await self._run()
        except BaseException:  # cancelled: leave nothing open
            self._abort()
            raise

    async def _run(self) -> CheckResult:
        started = self.loop.time()
        status: int | None = None
        try:
            async with asyncio.timeout_at(self.deadline):
                code, detail, status = await self._phases()
        except TimeoutError:
            code, detail = f"{self.phase}TOUT", f"{_WAITING[self.phase]} within {format_duration(self.hc.timeout)}"
        except _Failed as failed:
            code, detail, status = failed.code, failed.detail, failed.status
        except (OSError, EOFError) as exc:  # ssl.SSLError is an OSError
            code, detail = _FAILURE[self.phase], _describe(exc)
            if self.phase == "L6" and not isinstance(exc, ssl.SSLError):
                detail += " during the TLS handshake"
        result = CheckResult(code in _SUCCESS, code, status, self.loop.time() - started, detail, time.time())
        await self._close(clean=code in _SUCCESS or status is not None)
        return result

    async def _phases(self) -> tuple[str, str, int | None]:
        transport, _ = await self.loop.create_connection(lambda: self.protocol, self.host, self.port)
        self.transport = transport
        if self.hc.type == "tcp":
            return "L4OK", "connected", None
        if self.hc.type in ("https", "tls-hello"):
            self.phase = "L6"
            await self._handshake()
            if self.hc.type == "tls-hello":
                ssl_object = self.transport.get_extra_info("ssl_object")
                return "L6OK", f"TLS handshake done ({ssl_object.version() if ssl_object else 'TLS'})", None
        self.phase = "L7"
        return await self._exchange()

    async def _handshake(self) -> None:
        alpn = ("http/1.1",) if self.hc.type == "https" else ()
        assert self.transport is not None
        upgraded = await self.loop.start_tls(
            self.transport,  # type: ignore[arg-type]
            self.protocol,
            _client_context(alpn),
            server_hostname=_server_name(self.hc),
            ssl_handshake_timeout=self.hc.timeout,
            ssl_shutdown_timeout=self.hc.timeout,
        )
        if upgraded is None:  # the connection went away during the handshake
            raise EOFError("connection closed")
        self.transport = upgraded

    async def _exchange(self) -> tuple[str, str, int | None]:
        hc = self.hc
        request = (
            f"{hc.method} {hc.path} HTTP/1.1\r\n"
            f"Host: {_host_header(hc, self.host, self.port)}\r\n"
            f"User-Agent: {USER_AGENT}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        )
        self.transport.write(request.encode("latin-1"))  # type: ignore[union-attr]
        status = await self._read_status()
        if hc.accepts(status):
            return "L7OK", f"HTTP {status}", status
        raise _Failed("L7STS", f"HTTP {status} not in {hc.expect}", status)

    async def _read_status(self) -> int:
        """The status of the final response head (1xx interim heads are skipped)."""
        buffer = self.protocol.buffer
        while True:
            if buffer and not b"HTTP/".startswith(bytes(buffer[:5])):
                raise _Failed("L7RSP", f"not an HTTP response: {_shown(buffer)}")
            match = _HEAD_END.search(buffer, 0, MAX_HEAD + 4)
            if match is not None and match.end() <= MAX_HEAD:
                head = bytes(buffer[: match.end()])
                del buffer[: match.end()]
                line = _STATUS_LINE.match(head)
                if line is None:
                    raise _Failed("L7RSP", f"bad status line: {_shown(head)}")
                status = int(line.group(1))
                if 100 <= status < 200 and status != 101:
                    continue
                length = _CONTENT_LENGTH.search(head)
                if self.hc.method == "HEAD" or status in (204, 304):
                    self.body_left = 0
                elif length is not None:
                    self.body_left = int(length.group(1))
                return status
            if len(buffer) > MAX_HEAD:
                raise _Failed("L7RSP", f"response head over {MAX_HEAD // 1024} KiB")
            if self.protocol.closed:
                error = self.protocol.error
                if not buffer:
                    raise _Failed("L7RSP", f"{_describe(error)} before a response" if error else "connection closed without a response")
                raise _Failed("L7RSP", f"connection closed in the response head: {_shown(buffer)}")
            await self.protocol.wait()

    async def _close(self, clean: bool) -> None:
        """Close after the verdict: orderly when it went well (after reading an HTTP
        body to its Content-Length or until the member closes, within the deadline and
        MAX_DRAIN), else abort."""
        if self.transport is None:
            return
        if not clean:
            self._abort()
            return
        protocol = self.protocol
        if self.phase == "L7":
            protocol.draining = True
            protocol.drained = len(protocol.buffer)
            protocol.buffer.clear()
            whole = self.body_left
            try:
                async with asyncio.timeout_at(self.deadline):
                    while not protocol.closed and protocol.drained <= MAX_DRAIN and (whole is None or protocol.drained < whole):
                        await protocol.wait()
            except TimeoutError:
                pass
            if not (protocol.closed or (whole is not None and protocol.drained >= whole)):
                self._abort()  # unread bytes would make the close a reset anyway
                return
        self.transport.close()

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()  # type: ignore[attr-defined]


async def check_once(hc: HealthCheck, host: str, port: int) -> CheckResult:
    """Check the member at ``host``:``port`` once, as ``hc`` says; never raises for
    anything the member does (a refusal, a timeout, a bad answer is a result)."""
    return await _Probe(hc, host, port).run()
