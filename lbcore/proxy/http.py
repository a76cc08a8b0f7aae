"""The HTTP proxy: one ClientConnection per client connection, one Exchange per request.

Request path, in named phases (drawn once; the code follows it):

    accept ─► read head ─► route (ACLs) ─► pick member (persistence, balancer)
       │                                        │ none: 503
       │                   ┌────────────────────┘
       │                   ▼
       │            connect / reuse ──failed──► retry another member (redispatch)
       │                   │                     │ out of members/retries: 502 or 504
       │                   ▼
       │        send head + body (re-framed) ─► read response head ─► rewrite ─► stream body
       │                                                                      │
       └──── keep-alive: next request is routed on its own ◄── release member connection

The connection owns everything that outlives a request: the reader, the queue of
already-parsed pipelined events, the client-side deadline and flow control. The
Exchange owns one request/response pair: the Revision it started on, the member,
the backend connection and the server-side deadline. A request finishes on the
Revision it started on even if a reload swaps a new one in meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import TYPE_CHECKING

from lbcore._fastpath.clock import Clock
from lbcore._fastpath.logline import RecordMaker
from lbcore._fastpath.rewrite import HeadWriter
from lbcore._fastpath.sockio import DescriptorWriter, cork
from lbcore._fastpath.streams import Stream
from lbcore._fastpath import tlsconn
from lbcore.l7._http1_requests import RequestReader, new_request_reader
from lbcore.l7._http1_responses import ResponseReader
from lbcore.l7.facts import RequestFacts, new_request_facts
from lbcore.l7.http1 import (
    Data,
    EndOfMessage,
    InformationalResponse,
    ProtocolError,
    Request,
    Response,
    encode_chunk,
    encode_last_chunk,
    encode_response_head,
    error_response,
)
from lbcore.l7.persistence import CookiePersistence, SourcePersistence
from lbcore.proxy.accesslog import AccessRecord
from lbcore.proxy.backend import BackendConnection, ConnectFailed
from lbcore.proxy.flow import ReadGate, new_deadline, new_read_gate, transport_peer, transport_socket
from lbcore.proxy.runtime import client_v4, parse_client_text
from lbcore.proxy.stats import ListenerCounters, MemberCounters
from lbcore.tls.policy import client_cert_headers, peer_certificate

if TYPE_CHECKING:  # pragma: no cover
    from lbcore.l7.balance import MemberState
    from lbcore.proxy.runtime import ListenerRuntime, PoolRuntime
    from lbcore.proxy.worker import Worker

# The compiled TLS transport, which the compiled engine writes to by C calls (http.pxd
# types ClientConnection.tls); None when the TLS connections are the pure twin's.
_C_TLS = tlsconn.TlsConnection if tlsconn.IMPLEMENTATION == "compiled" else None
_TLS = tlsconn.TlsConnection  # either twin's
_C_TLS_SERVER = tlsconn.TlsServer if tlsconn.IMPLEMENTATION == "compiled" else None

__all__ = ["ClientConnection", "Exchange", "ProtocolFactory", "TlsClientConnection", "WorkerContext", "new_exchange"]

log = logging.getLogger("lbcore.proxy.http")

# A request body is buffered while the member connection is being set up; past this
# many bytes the client is paused (flow control), so the buffer stays bounded.
BODY_BUFFER_HIGH = 64 * 1024

_IDLE, _HEAD, _BUSY, _CLOSING = range(4)

# ReadGate's reasons. Compiled, these are C globals (http.pxd): ``ReadGate.PIPELINE``
# would be an attribute lookup on the class, several per request.
_PEER_FULL = ReadGate.PEER_FULL
_PIPELINE = ReadGate.PIPELINE
_BUFFERED = ReadGate.BUFFERED

# Linux's TCP_CORK (see ClientConnection.write_last); None elsewhere.
_TCP_CORK = getattr(socket, "TCP_CORK", None)

# Stand-ins before a connection or exchange has its real counters: they absorb
# increments so the hot path needs no "is None" checks.
_NO_LISTENER_STATS = ListenerCounters()
_NO_NAMES: frozenset[str] = frozenset()  # a plain connection's client-certificate headers
_NO_MEMBER_STATS = MemberCounters()  # client-side phases: which timeout applies
_records = RecordMaker()  # makes each request's AccessRecord (typed in http.pxd)
_heads = HeadWriter()  # writes the heads each way (lbcore.l7.rewrite's rules; typed in http.pxd)
_writer = DescriptorWriter()  # write_last corks a stream by its descriptor (sockio; typed in http.pxd)


class WorkerContext:
    """What a worker's connections read on every request or connection: the loop, the
    per-process tables, the current revision and the bind table, two flags.

    The Worker keeps them here (its ``revision``, ``bind_listener``, ``stopping`` and
    ``passive`` are properties over this object), so that, compiled (``http.pxd``),
    the request path reads them as C fields: an attribute of the interpreted Worker
    is a generic lookup, ~100-400 instructions each, several per request.
    """

    __slots__ = ("loop", "clock", "stats", "backends", "access_logs", "admission", "revision", "bind_listener",
                 "stopping", "passive")

    def __init__(self, loop, stats, backends, access_logs, admission) -> None:
        self.loop = loop
        # The request path's clock (time.monotonic()); compiled, a C call returning a
        # C double (lbcore/_fastpath/_clock_py.py says why).
        self.clock = Clock()
        self.stats = stats  # WorkerStats
        self.backends = backends  # BackendPools
        self.access_logs = access_logs  # AccessLogs
        self.admission = admission  # Admission
        self.revision = None  # the current Revision, once a spec was applied
        self.bind_listener: dict[str, str] = {}  # bind key -> listener name in the current revision
        self.stopping = False  # draining: no keep-alive, no new connections
        # Passive checks: consecutive (gateway errors, 5xx) per "pool/member"; empty
        # while no member has failed since the counts were last cleared.
        self.passive: dict[str, list[int]] = {}


class ClientConnection:
    """One client connection on an HTTP listener: an asyncio protocol (connection_made,
    data_received, eof_received, connection_lost, pause/resume_writing), not derived
    from ``asyncio.Protocol`` because the compiled build makes it an extension type
    (``http.pxd``), which cannot derive from a Python class."""

    __slots__ = (
        "worker", "context", "loop", "listener_name", "transport", "sock", "stream", "tls",
        "gate",
        "deadline", "phase", "client_ip", "client_ip_text", "client_port", "reader", "pending", "pending_at",
        "closed",
        "counted", "lstats", "requests",
        "tunnel", "tunnel_backlog", "tunnel_timeout", "sni", "cert_headers", "cert_header_names",
        "exchange", "listener", "head_started",
    )

    CORK_LAST_WRITE = True  # plain TCP: see write_last

    def __init__(self, worker: "Worker", listener_name: str) -> None:
        self._setup(worker, worker.context, listener_name)

    def _setup(self, worker: "Worker", context: WorkerContext, listener_name: str) -> None:
        """``__init__``'s work, on a new instance: the protocol factory calls it with the
        worker's context it holds (``new_connection``: no type call, no lookup of
        ``worker.context`` per accept)."""
        # lifetime: connection
        self.worker = worker
        # The worker's per-process tables, read through the context so the compiled
        # request path reaches them as typed fields (http.pxd), not through the Worker.
        self.context = context
        self.loop = context.loop
        self.listener_name = listener_name
        self.transport: asyncio.Transport | None = None
        self.sock = None  # the transport's socket object, once connected (None: it has none)
        self.stream = None  # the transport when it is a Stream: written to by a C call (see write)
        self.tls = None  # the transport when it is the compiled TLS connection: the same
        self.gate = new_read_gate()
        self.deadline = new_deadline(self.loop, self._deadline_expired)
        self.phase = _IDLE
        self.client_ip = None
        self.client_ip_text = ""
        self.client_port = 0
        self.reader: RequestReader | None = None
        # Parsed events not yet handed to an exchange (pipelining): pending[pending_at:],
        # in order; emptied whenever drained (take_pending), so it is true while any wait.
        self.pending: list = []
        self.pending_at = 0
        self.closed = False
        self.counted = False  # counted in lstats.conns_cur
        self.lstats = _NO_LISTENER_STATS
        self.requests = 0
        self.tunnel: BackendConnection | None = None  # set once upgraded (WebSocket)
        self.tunnel_backlog: list[bytes] | None = None  # bytes after an upgrade request, before the 101
        self.tunnel_timeout = 0.0
        # TLS (https listeners)
        self.sni: str | None = None
        self.cert_headers: tuple[tuple[str, str], ...] = ()
        self.cert_header_names: frozenset[str] = _NO_NAMES
        self.listener: ListenerRuntime | None = None  # admitted on (its timeouts), set once admitted
        self.head_started = 0.0  # when the current request head began to arrive
        # lifetime: current request
        self.exchange: Exchange | None = None

    # -- asyncio.Protocol ---------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (A C method once compiled, its listener typed: http.pxd.)
        self.transport = transport  # type: ignore[assignment]
        self.gate.attach(self.transport)  # type: ignore[arg-type]
        listener = self.context.revision.listeners.get(self.listener_name)
        if listener is None or not self.context.admission.admit(self.listener_name, self):
            # Listener removed by a reload in this instant, or over maxconn.
            transport.write(error_response(503))  # type: ignore[attr-defined]
            transport.close()
            self.closed = True
            return
        # Made without the type call's argument parsing (new_request_reader), from the runtime's C fields.
        self.reader = new_request_reader(listener.max_request_line, listener.max_header_bytes, listener.max_headers)
        # The socket is kept for write_last's TCP_CORK (a stream: the stream itself); not
        # under TLS, whose transport gives the address of the connection below it (a
        # stream's from its accept: no view, no system call).
        sock = None
        if listener.tls is None:
            self.sock = sock = transport_socket(transport)
        # A stream's IPv4 client is a number, its address object and text cached by it;
        # any other transport gives getpeername()'s tuple.
        number = -1
        stream = None
        if type(transport) is Stream:
            self.stream = stream = transport  # compiled: typed (http.pxd), its fields read in C
        elif type(transport) is _C_TLS:
            self.tls = tls = transport
            stream = tls.stream  # the TCP connection below, when a stream: its address is the client's
        if stream is not None:
            number = stream.peer_v4
            port = stream.peer_port
        if number >= 0:
            self.client_ip, self.client_ip_text = client_v4(number)
            self.client_port = port
        else:
            self.client_ip, self.client_ip_text, self.client_port = parse_client_text(transport_peer(transport, sock))
        self.lstats = lstats = self.context.stats.listener(self.listener_name)
        if listener.tls is not None:
            self.tls_established(transport, listener)
        self.listener = listener
        self.head_started = self.context.clock.now()
        lstats.conns_total += 1
        lstats.conns_cur += 1
        self.counted = True
        self.phase = _IDLE
        # The first request gets http_request to arrive (slowloris), not keepalive.
        self.deadline.extend(listener.http_request_timeout)

    def tls_established(self, transport: asyncio.BaseTransport, listener: "ListenerRuntime") -> None:
        """After the handshake: the SNI name, resumption, the client's certificate
        (``self.lstats`` set). The compiled TLS connection is asked in C; any other
        transport for its ``ssl_object``."""
        lstats = self.lstats
        tls = self.tls
        if tls is not None:
            ssl_object = tls
            self.sni = tls.lbcore_sni
            resumed = tls.resumed()
        else:
            ssl_object = transport.get_extra_info("ssl_object")
            if ssl_object is None:
                return
            self.sni = getattr(ssl_object, "lbcore_sni", None)
            resumed = ssl_object.session_reused
        if resumed:
            lstats.tls_resumed += 1
        else:
            lstats.tls_full += 1
        auth = listener.client_auth
        if auth is not None:
            self.cert_headers = client_cert_headers(peer_certificate(ssl_object), auth)
            self.cert_header_names = frozenset([name.lower() for name in auth.headers])  # no closure: cpdef

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.lstats.bytes_in += len(data)
        if self.tunnel is not None:
            self.deadline.extend(self.tunnel_timeout)
            self.tunnel.write(data)
            return
        reader = self.reader
        if reader is None:
            return
        if reader.upgraded:
            # Bytes after an upgrade request, before the member answered 101.
            self.hold_for_tunnel(data)
            return
        try:
            events = reader.feed(data)
        except ProtocolError as exc:
            self.protocol_error(exc)
            return
        if self.phase == _IDLE:
            self.phase = _HEAD
            self.head_started = self.context.clock.now()
            if not events:  # a head in pieces: it has http_request to arrive (with events, dispatch sets the timeout)
                self.deadline.extend(self.listener.http_request_timeout)
        elif self.phase == _BUSY:
            self.deadline.extend(self.listener.client_timeout)
        if events:
            self.pending.extend(events)
            self.dispatch()
        if reader.upgraded:
            tail = reader.take_tail()
            if tail:
                self.hold_for_tunnel(tail)

    def hold_for_tunnel(self, data: bytes) -> None:
        """Keep bytes that came after an upgrade request until the member's 101."""
        if self.tunnel_backlog is None:
            self.tunnel_backlog = []
        self.tunnel_backlog.append(data)

    def eof_received(self) -> bool:
        if self.reader is not None and self.tunnel is None:
            try:
                events = self.reader.feed_eof()
            except ProtocolError as exc:
                # Half a request, then EOF: nothing sensible to answer.
                log.debug("client %s closed mid-request: %s", self.client_ip_text, exc)
                self.close()
                return False
            if events:
                self.pending.extend(events)
                self.dispatch()
        tunnel = self.tunnel
        if tunnel is not None:
            if tunnel.transport is not None and tunnel.transport.can_write_eof():
                tunnel.transport.write_eof()
                return True
            self.close()
            return False
        if self.exchange is None:
            self.close()
            return False
        # Client half-closed after sending a full request: finish the response, then close.
        self.exchange.client_keep_alive = False
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.deadline.close()
        if self.counted:
            self.lstats.conns_cur -= 1
        self.context.admission.release(self.listener_name, self)
        if self.exchange is not None:
            self.exchange.client_lost()
            self.exchange = None
        if self.tunnel is not None:
            self.tunnel.close()
            self.tunnel = None

    def pause_writing(self) -> None:
        ex = self.exchange
        if ex is not None and ex.backend is not None:
            ex.backend.gate.pause(_PEER_FULL)
        elif self.tunnel is not None:
            self.tunnel.gate.pause(_PEER_FULL)

    def resume_writing(self) -> None:
        ex = self.exchange
        if ex is not None and ex.backend is not None:
            ex.backend.gate.resume(_PEER_FULL)
        elif self.tunnel is not None:
            self.tunnel.gate.resume(_PEER_FULL)

    # -- requests -------------------------------------------------------------------
    def dispatch(self) -> None:
        """Hand parsed events to the current exchange, starting one per request."""
        pending = self.pending
        while pending and not self.closed:
            ex = self.exchange
            if ex is None:
                event = self.take_pending()
                if type(event) is not Request:  # pragma: no cover - reader guarantees order
                    self.close()
                    return
                self.phase = _BUSY
                self.deadline.extend(self.listener.client_timeout)
                self.requests += 1
                self.exchange = new_exchange(self, event)
                self.exchange.start()
            elif ex.request_done:
                # A pipelined request: it waits for this response; stop reading meanwhile.
                self.gate.pause(_PIPELINE)
                return
            else:
                ex.client_event(self.take_pending())

    def take_pending(self):
        """The oldest pending event. A list and an index rather than a deque: a deque
        costs a 64-slot block made and freed per connection (~1.5k instructions), and its
        extend and popleft more than a list's, for the one or two events a request has."""
        pending = self.pending
        at = self.pending_at
        event = pending[at]
        at += 1
        if at == len(pending):
            pending.clear()
            at = 0
        else:
            pending[at - 1] = None  # handed on: not held here (a body's data)
        self.pending_at = at
        return event

    def exchange_done(self, ex: "Exchange", keep_alive: bool) -> None:
        """The response went out whole; go on with the next request or close."""
        if self.exchange is not ex:
            return
        self.exchange = None
        if not keep_alive or self.closed or self.context.stopping or (self.reader is not None and self.reader.upgraded):
            # An upgrade the member declined (or CONNECT) leaves the reader in tunnel
            # mode: what the client sends next is not HTTP we can parse, so close.
            self.close()
            return
        self.gate.resume(_PIPELINE | _PEER_FULL | _BUFFERED)
        if self.pending:
            self.phase = _HEAD
            self.head_started = self.context.clock.now()
            self.dispatch()
        else:
            self.phase = _IDLE
            self.deadline.extend(self.listener.keepalive_timeout)

    def start_tunnel(self, backend: BackendConnection, member_tail: bytes, timeout: float) -> None:
        """The member answered 101: shuttle bytes both ways from now on.

        ``timeout`` is the pool's tunnel timeout: inactivity in both directions.
        """
        self.exchange = None
        self.tunnel = backend
        backend.deadline.cancel()  # the tunnel's inactivity is timed on this side
        self.tunnel_timeout = timeout
        backend.owner = TunnelOwner(self)
        self.phase = _BUSY
        self.deadline.extend(timeout)
        self.gate.resume(_PIPELINE | _PEER_FULL | _BUFFERED)
        if member_tail:
            self.write(member_tail)
        backlog = self.tunnel_backlog
        self.tunnel_backlog = None
        for chunk in backlog or ():
            backend.write(chunk)

    # -- output and teardown --------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self.counted_out(len(data)):
            stream = self.stream
            if stream is not None:
                # A stream sends what the kernel takes at once itself; compiled, this is a
                # C call (http.pxd), where transport.write was a method call by name.
                stream.write(data)
                return
            tls = self.tls
            if tls is not None:
                tls.write(data)  # the same for the compiled TLS connection
                return
            # The engine's connections are on streams, under the TLS layer or not; any
            # other transport (the pure TLS twin's, a test's) is written to by name.
            self.transport.write(data)

    def counted_out(self, size: int) -> bool:
        """Count ``size`` bytes written to the client; false if nothing can be written."""
        if self.closed or self.transport is None:
            return False
        self.lstats.bytes_out += size
        if self.exchange is not None:
            self.exchange.bytes_out += size
        return True

    def write_last(self, data: bytes) -> None:
        """Write the connection's last bytes; the caller closes it right after.

        On plain TCP the socket is corked first (Linux TCP_CORK), so the kernel holds
        the tail of ``data`` until close() and sends it with the FIN in one segment:
        one wake-up of the client instead of two, and one segment fewer to process
        on both ends (+13% requests per CPU-second with a connection per request).
        Not when the client may have sent bytes not read yet (pipelined requests,
        reading paused): close() then resets the connection, and the kernel would
        drop the corked bytes with it. Under TLS the TLS layer closes at once
        (``write_last``): the records of ``data`` and the close_notify go to the
        socket in one write and, when that happens while the stream's events are
        handled (as after a response), in one segment with the FIN the stream's
        write_eof sends right after (MSG_MORE); the TLS close then waits for the
        client's own end before closing the socket.
        """
        tls = self.tls
        if tls is not None:  # the compiled TLS connection: a C call
            if self.counted_out(len(data)):
                tls.write_last(data)
            return
        if type(self.transport) is _TLS:  # the pure twin's
            if self.counted_out(len(data)):
                self.transport.write_last(data)
            return
        if (self.CORK_LAST_WRITE and _TCP_CORK is not None and not self.closed and self.transport is not None
                and not self.pending and not self.gate.reasons):  # a pipelining client: maybe unread bytes
            sock = self.sock  # connection_made's transport_socket
            if sock is not None:
                try:
                    if type(sock) is Stream:
                        stream = sock  # compiled: typed, corked by its descriptor in C
                        _writer.cork(stream.fileno())
                    else:
                        cork(sock)
                except OSError:  # not a TCP socket (unix listener), or already shut
                    pass
        self.write(data)

    def send_error(self, status: int, extra_headers=()) -> None:
        self.write(error_response(status, extra_headers=extra_headers))
        self.close()

    def protocol_error(self, exc: ProtocolError) -> None:
        log.debug("client %s: %s", self.client_ip_text, exc)
        self.lstats.errors += 1
        if self.exchange is None:
            self.log_without_request(exc.status_hint, "PR")
        if self.exchange is not None and self.exchange.response_started:
            self.abort()
            return
        self.send_error(exc.status_hint)

    def log_without_request(self, status: int, termination: str) -> None:
        """Access-log a refusal that happened before any request head was read."""
        access_log = self.context.access_logs.for_listener(self.listener_name)
        if access_log is None:
            return
        now = self.context.clock.now()
        access_log.log(
            AccessRecord(
                accepted=self.context.clock.wall(),
                started=now,
                client_ip=self.client_ip_text,
                client_port=self.client_port,
                listener=self.listener_name,
                status=status,
                t_request=now - self.head_started,
                t_total=now - self.head_started,
                termination=termination,
            )
        )

    def close(self) -> None:
        """Close after pending writes are flushed."""
        if not self.closed:
            self.closed = True
            self.phase = _CLOSING
            self.deadline.cancel()
            transport = self.transport
            if type(transport) is Stream:
                stream = transport  # compiled: typed, a C call
                stream.close()
            elif self.tls is not None:
                self.tls.close()  # the compiled TLS connection: the same
            elif transport is not None:
                transport.close()

    def abort(self) -> None:
        self.closed = True
        self.deadline.cancel()
        if self.transport is not None:
            self.transport.abort()

    def shutdown(self) -> None:
        """Graceful stop: close now if idle, else after the current response."""
        if self.exchange is None and self.tunnel is None:
            self.close()

    def _deadline_expired(self) -> None:
        phase = self.phase
        if self.closed:
            return
        if phase == _IDLE:
            self.close()  # keep-alive idle: close silently
        elif phase == _HEAD:
            self.log_without_request(408, "cR")
            self.send_error(408)
        else:
            ex = self.exchange
            if ex is not None and not ex.response_started:
                ex.abandon()
                self.send_error(408)
            else:
                if ex is not None:
                    ex.abandon()
                self.abort()


class TlsClientConnection(ClientConnection):
    """A client connection on an https listener, above lbcore's TLS layer
    (``lbcore._fastpath.tlsconn``), which calls connection_made once the handshake
    succeeded; failed handshakes are counted by the worker (``Worker.tls_failed``)."""

    __slots__ = ()

    CORK_LAST_WRITE = False  # see ClientConnection.write_last


def new_connection(tls: bool, worker: "Worker", context: WorkerContext, listener_name: str) -> ClientConnection:
    """``(TlsClientConnection if tls else ClientConnection)(worker, listener_name)``,
    given the worker's context: compiled, a C call that allocates and sets up the
    connection without the type call's argument parsing."""
    conn = TlsClientConnection.__new__(TlsClientConnection) if tls else ClientConnection.__new__(ClientConnection)
    conn._setup(worker, context, listener_name)
    return conn


class ProtocolFactory:
    """The loop's protocol factory for one bound address: called once per accepted
    connection, it makes the protocol of the listener bound there in the worker's
    current revision (a reload may rebind the address to another listener).

    Compiled (``http.pxd``), so an accept runs no interpreted frame: the worker's
    closure that did this cost ~6k instructions a connection. ``tcp_client`` makes the
    protocol of a tcp or tls-passthrough listener (``tcp.TcpClient``, given by the
    worker: this module does not import it); ``terminator``, when the address serves
    TLS, wraps the connection in lbcore's TLS layer (``TlsServer.connection``).
    """

    def __init__(self, worker: "Worker", key: str, tcp_client, terminator=None) -> None:
        self.worker = worker
        self.context = worker.context
        self.key = key
        self.tcp_client = tcp_client
        self.terminator = terminator

    def __call__(self):
        return self.make()

    def make(self):
        """The protocol of a connection accepted now (compiled: a C method, which the
        compiled acceptor calls through the declared base, streams' ProtocolMaker)."""
        worker = self.worker
        name = self.context.bind_listener[self.key]
        listener: ListenerRuntime = self.context.revision.listeners[name]
        if listener.serves_http:
            made = new_connection(listener.https, worker, self.context, name)
        else:
            made = self.tcp_client(worker, name, sniff_sni=listener.protocol == "tls-passthrough")
        terminator = self.terminator
        if terminator is None:
            return made
        if type(terminator) is _C_TLS_SERVER:
            server = terminator  # compiled: typed (http.pxd), its connection() a C call
            return server.connection(made)
        return terminator.connection(made)


class TunnelOwner:
    """Receives a member's bytes once a connection became a tunnel (WebSocket)."""

    __slots__ = ("client",)

    def __init__(self, client: ClientConnection) -> None:
        self.client = client

    def backend_data(self, conn: BackendConnection, data: bytes) -> None:
        client = self.client
        client.deadline.extend(client.tunnel_timeout)
        client.write(data)

    def backend_eof(self, conn: BackendConnection) -> None:
        transport = self.client.transport
        if transport is not None and not self.client.closed and transport.can_write_eof():
            transport.write_eof()
        else:
            self.client.close()

    def backend_lost(self, conn: BackendConnection, exc: Exception | None) -> None:
        self.client.tunnel = None
        self.client.close()

    def backend_pause_writing(self) -> None:
        self.client.gate.pause(_PEER_FULL)

    def backend_resume_writing(self) -> None:
        self.client.gate.resume(_PEER_FULL)


class Exchange:
    """One request and its response."""

    __slots__ = (
        "conn", "request", "revision", "listener", "pool", "member", "backend", "pstats", "mstats", "started",
        "accepted", "status", "bytes_out", "termination", "t_queue", "t_connect", "t_first_byte", "sent_at",
        "slot", "acl", "facts", "client_keep_alive", "request_done", "body_pending", "body_pending_size",
        "body_sent", "body_received", "body_limit", "discard_body", "reader", "response_started",
        "response_chunked", "response_keep_alive", "backend_keep_alive", "tried", "finished",
    )

    def __init__(self, conn: ClientConnection, request: Request) -> None:
        self._setup(conn, request)

    def _setup(self, conn: ClientConnection, request: Request) -> None:
        # (__init__'s body; new_exchange calls it without the type call.)
        # lifetime: this exchange
        self.conn = conn
        self.request = request
        # (Read back through self: compiled, the fields are typed and the arguments not.)
        self.revision = self.conn.context.revision  # finishes on the revision it started on
        self.listener: ListenerRuntime = self.revision.listeners[self.conn.listener_name]
        self.pool: PoolRuntime | None = None
        self.member: MemberState | None = None
        self.backend: BackendConnection | None = None
        self.pstats = None  # PoolCounters once routed
        self.mstats = _NO_MEMBER_STATS  # MemberCounters of the member in use
        self.started = self.conn.context.clock.now()
        self.accepted = self.conn.context.clock.wall()  # compiled, a C double: no Python call, no float
        self.status: int | None = None
        self.bytes_out = 0
        self.termination = "--"
        self.t_queue: float | None = None
        self.t_connect: float | None = None
        self.t_first_byte: float | None = None
        self.sent_at = 0.0  # loop time the request head went to the member
        self.slot = None  # the MemberPool whose concurrency slot this exchange holds
        self.acl: str | None = None
        self.facts: RequestFacts | None = None
        self.client_keep_alive = self.request.keep_alive
        # request side
        self.request_done = False
        # Encoded body buffered until connected (the empty tuple until there is some: most
        # requests have none, and no list is made for them); None once streaming.
        self.body_pending: list[bytes] | tuple[()] | None = ()
        self.body_pending_size = 0
        self.body_sent = False
        self.body_received = 0
        self.body_limit = self.listener.max_body  # None: unlimited
        self.discard_body = False
        # response side
        self.reader: ResponseReader | None = None
        self.response_started = False
        self.response_chunked = False
        self.response_keep_alive = False
        self.backend_keep_alive = False
        self.tried: list[MemberState] | None = None  # members connected to, in order (connect() makes it)
        self.finished = False

    # -- phases ---------------------------------------------------------------------
    def start(self) -> None:
        conn = self.conn
        request = self.request
        listener = self.listener
        conn.lstats.requests += 1
        redirect = listener.redirect
        if redirect is not None:
            self.discard_body = True
            self.answer(redirect.code, (("Location", self.redirect_location(redirect)),))
            return
        method = request.method
        # The length first: compiled, a str == str that is not one object is a
        # PyUnicode_Compare call (Cython 3.3), and most requests are a GET.
        if len(method) == 7 and method == "CONNECT":
            self.discard_body = True
            self.answer(405, (("Allow", "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS"),))
            return
        body_limit = self.body_limit
        if body_limit is not None and request.content_length is not None and request.content_length > body_limit:
            self.discard_body = True
            self.answer(413, keep_alive=False)
            return
        facts = new_request_facts(
            request.method, request.target, request.headers, conn.client_ip, conn.client_port, conn.sni
        )
        self.facts = facts
        route = listener.router.route(facts)
        self.acl = route.acl
        pool = listener.pools.get(route.pool) if route.pool else None
        if pool is None:
            self.discard_body = True
            self.answer(503, (("Retry-After", "1"),))
            return
        self.pool = pool
        pstats = pool.counters  # the worker's counters of the pool, kept by the pool's runtime
        if pstats is None:
            pstats = pool.counters = conn.context.stats.pool(pool.name)
        self.pstats = pstats
        pstats.requests += 1
        member = self.pick_member()
        if member is None:
            pstats.no_member += 1
            self.discard_body = True
            self.answer(503, (("Retry-After", "1"),))
            return
        self.connect(member)

    def pick_member(self) -> "MemberState | None":
        pool = self.pool
        assert pool is not None and self.facts is not None
        persistence = pool.persistence
        if persistence is not None and not self.tried:
            if isinstance(persistence, SourcePersistence):
                member = persistence.lookup(self.facts, pool.by_name, self.conn.loop.time())
            else:
                member = persistence.lookup(self.facts, pool.by_name)
            if member is not None:
                return member
        return pool.balancer.pick(self.facts, self.tried if self.tried is not None else ())

    def member_pool(self, member: "MemberState"):
        pool = self.pool
        mpool = pool.member_pools.get(member.name)  # type: ignore[union-attr]
        if mpool is None:
            info = member.data
            mpool = self.conn.context.backends.get(info.host, info.port, pool.idle_per_member, pool.keepalive_timeout,
                                                   pool.conn_key, pool.connect_kwargs)  # type: ignore[union-attr]
            pool.member_pools[member.name] = mpool  # type: ignore[union-attr]
        else:
            # What BackendPools.get sets on every call: a tcp listener's pool to the
            # same address shares the connection pool and sets its own.
            mpool.idle_max = pool.idle_per_member  # type: ignore[union-attr]
            mpool.idle_timeout = pool.keepalive_timeout  # type: ignore[union-attr]
        return mpool

    def connect(self, member: "MemberState") -> None:
        self.member = member
        pool = self.pool
        mstats = pool.member_counters.get(member.name)  # type: ignore[union-attr]
        if mstats is None:
            mstats = self.conn.context.stats.member(pool.name, member.name)  # type: ignore[union-attr]
            pool.member_counters[member.name] = mstats  # type: ignore[union-attr]
        self.mstats = mstats
        self.mstats.requests += 1
        member.active += 1
        if self.tried is None:
            self.tried = [member]
        else:
            self.tried.append(member)
        mpool = self.member_pool(member)
        pool = self.pool
        limit = pool.max_conns_per_member
        if limit and mpool.in_use >= limit:
            self.conn.loop.create_task(self._queue(mpool, limit, pool.connect_timeout))
            return
        mpool.take_slot()
        self.slot = mpool
        backend = mpool.take_idle()
        if backend is not None:
            self.attach(backend)
        else:
            self.conn.loop.create_task(self._connect(mpool, pool.connect_timeout))

    async def _queue(self, mpool, limit: int, timeout: float) -> None:
        """The member is at max_connections_per_member: wait for a slot, in order."""
        self.pstats.queued += 1
        queued_at = self.conn.context.clock.now()
        if not await mpool.wait_slot(limit, timeout):
            if not self.finished:
                self.pstats.queue_timeouts += 1
                self.termination = "sQ"
                self.fail(503)
            return
        self.t_queue = self.conn.context.clock.now() - queued_at
        if self.finished:
            mpool.free_slot()
            return
        self.slot = mpool
        backend = mpool.take_idle()
        if backend is not None:
            self.attach(backend)
        else:
            await self._connect(mpool, self.pool.connect_timeout)  # type: ignore[union-attr]

    async def _connect(self, mpool, timeout: float) -> None:
        connect_at = self.conn.context.clock.now()
        try:
            backend = await mpool.connect(timeout)
        except ConnectFailed as exc:
            self.connect_failed(exc)
            return
        self.t_connect = self.conn.context.clock.now() - connect_at
        self.mstats.conns_total += 1
        if self.finished:
            mpool.put_idle(backend)  # the client went away meanwhile: keep it warm
            return
        if backend.closed:
            # Accepted, then closed before we could send a byte: as good as refused,
            # and nothing was sent, so another member may take the request.
            self.connect_failed(ConnectFailed(f"{mpool.host}:{mpool.port} closed the connection at once"))
            return
        self.attach(backend)

    def connect_failed(self, exc: ConnectFailed) -> None:
        if self.finished:
            return
        self.pstats.connect_errors += 1
        self.mstats.connect_errors += 1
        self.conn.worker.member_error(self.member, gateway=True)
        log.info("%s: %s", self.member.data if self.member else "?", exc)
        self.release_member()
        self.free_slot()
        assert self.pool is not None
        if self.tried is not None and len(self.tried) <= self.pool.retries:
            member = self.pool.balancer.pick(self.facts, self.tried)
            if member is not None:
                self.pstats.redispatches += 1
                self.connect(member)
                return
        self.termination = "sC" if exc.timeout else "SC"
        self.fail(504 if exc.timeout else 502)

    def attach(self, backend: BackendConnection) -> None:
        """A member connection is ready: send the head and what body we have."""
        self.backend = backend
        backend.owner = self
        request = self.request
        reader = backend.reader
        if reader is None:
            reader = backend.reader = ResponseReader()
        reader.expect(request.method)
        self.reader = reader
        pool = self.pool
        assert pool is not None and self.member is not None
        info = self.member.data
        head = _heads.for_member(
            request,
            self.listener.policy,
            self.conn.client_ip_text,
            info.authority,  # default_host
            pool.strip_cookie,
            self.conn.cert_headers,  # connection_headers
            self.conn.cert_header_names,
        )
        pending = self.body_pending
        self.body_pending = None
        self.body_sent = bool(pending)
        out = b"".join((head, *pending)) if pending else head
        self.mstats.bytes_out += len(out)
        backend.write(out)
        self.sent_at = self.conn.context.clock.now()
        if self.t_connect is None:
            self.t_connect = 0.0  # a reused member connection
        if self.body_pending_size:
            self.body_pending_size = 0
            self.conn.gate.resume(_BUFFERED)
        backend.deadline.extend(pool.server_timeout)
        # The client still holding much of what went before: read the member later. (A
        # stream or the compiled TLS connection is asked in C.)
        conn = self.conn
        stream = conn.stream
        tls = conn.tls
        if stream is not None:
            waiting = stream.get_write_buffer_size()
        elif tls is not None:
            waiting = tls.get_write_buffer_size()
        elif conn.transport is not None:
            waiting = conn.transport.get_write_buffer_size()
        else:
            waiting = 0
        if waiting > 65536:
            backend.gate.pause(_PEER_FULL)

    # -- client events --------------------------------------------------------------
    def client_event(self, event: object) -> None:
        kind = type(event)
        if kind is Data:
            if self.discard_body:
                return
            data = event.data  # type: ignore[attr-defined]
            self.body_received += len(data)
            if self.body_limit is not None and self.body_received > self.body_limit:
                self.body_too_large()
                return
            if self.request.chunked:
                data = encode_chunk(data)
            self.send_body(data)
        elif kind is EndOfMessage:
            self.request_done = True
            if not self.discard_body and self.request.chunked:
                self.send_body(encode_last_chunk(event.trailers))  # type: ignore[attr-defined]
            if self.finished:
                self.conn.exchange_done(self, self.response_keep_alive)
            elif not self.response_started:
                # The client has said everything and waits: only the server timeout
                # applies until the response flows (as haproxy's "timeout client").
                self.conn.deadline.suspend()

    def body_too_large(self) -> None:
        """A chunked body grew past limits.max_body (a Content-Length one is refused upfront)."""
        self.discard_body = True
        self.termination = "PR"
        if not self.response_started:
            self.status = 413
        started = self.response_started
        self.abandon()
        if started:
            self.conn.abort()
        else:
            self.conn.send_error(413)

    def send_body(self, data: bytes) -> None:
        if not data:
            return
        pending = self.body_pending
        if pending is not None:
            if type(pending) is not list:  # the empty tuple: the first bytes
                self.body_pending = pending = []
            pending.append(data)
            self.body_pending_size += len(data)
            if self.body_pending_size > BODY_BUFFER_HIGH:
                self.conn.gate.pause(_BUFFERED)
        elif self.backend is not None:
            self.body_sent = True
            self.mstats.bytes_out += len(data)
            self.backend.write(data)
            self.backend.deadline.extend(self.pool.server_timeout)  # type: ignore[union-attr]

    # -- member events (BackendOwner) -------------------------------------------------
    def backend_data(self, backend: BackendConnection, data: bytes) -> None:
        reader = self.reader
        assert reader is not None
        self.mstats.bytes_in += len(data)
        try:
            events = reader.feed(data)
        except ProtocolError as exc:
            self.member_protocol_error(exc)
            return
        self.forward(events)
        if not self.finished:
            if reader.upgraded:
                self.finish_upgrade(reader.take_tail())
            else:
                # More of the response to come: the server timeout runs from this read.
                # (A complete response released the connection, whose idle timeout runs.)
                backend.deadline.extend(self.pool.server_timeout)  # type: ignore[union-attr]

    def forward(self, events: list) -> None:
        conn = self.conn
        out: list[bytes] = []
        last = len(events) - 1
        for index, event in enumerate(events):
            # The typed locals (``http.pxd``) read an event's fields as C fields.
            kind = type(event)
            if kind is Data:
                data_event = event
                data = data_event.data
                out.append(encode_chunk(data) if self.response_chunked else data)
            elif kind is Response:
                head = event
                out.append(self.response_head(head))
                if head.status == 101:
                    # Switching protocols: what follows is the tunnel (finish_upgrade).
                    conn.write(b"".join(out))
                    return
            elif kind is EndOfMessage:
                if self.response_chunked:
                    out.append(encode_last_chunk(event.trailers))
                if out:
                    # No client timeout to set: exchange_done sets keepalive (or the next request's).
                    self.write_end(b"".join(out) if len(out) > 1 else out[0],
                                   self.response_keep_alive and self.client_keep_alive)
                if index != last:
                    # Bytes after the response: the member broke framing; never reuse it.
                    self.backend_keep_alive = False
                self.response_complete()
                return
            elif kind is InformationalResponse:
                if self.request.http_version == "1.1":
                    out.append(encode_response_head(event.status, event.reason, event.headers))
        if out:
            conn.write(b"".join(out) if len(out) > 1 else out[0])
            conn.deadline.extend(conn.listener.client_timeout)

    def write_end(self, data: bytes, keep_alive: bool) -> None:
        """The response's last bytes. When the connection ends with it (exchange_done
        closes it) and the whole request was read, as the connection's last write."""
        if keep_alive or not self.request_done or self.conn.exchange is not self:
            self.conn.write(data)
        else:
            self.conn.write_last(data)

    def response_head(self, response: Response) -> bytes:
        self.response_started = True
        status = response.status
        self.status = status
        now = self.conn.context.clock.now()  # compiled, a C double (http.pxd): no float made
        self.t_first_byte = now - self.sent_at
        self.conn.lstats.response(status)
        self.pstats.response(status)
        self.mstats.response(status)
        worker = self.conn.worker
        if status >= 500:
            worker.member_error(self.member, gateway=False)
        elif self.conn.context.passive and self.member is not None:  # some member has failed lately
            worker.member_ok(self.member)
        extra = self.listener.response_headers
        persistence = self.pool.persistence if self.pool else None
        if persistence is not None and self.member is not None:
            if isinstance(persistence, CookiePersistence):
                cookie = persistence.response_cookie(self.facts, self.member)
                if cookie is not None:
                    extra = (cookie, persistence.nocache_header, *extra)
            else:
                persistence.record(self.facts, self.member, self.conn.loop.time())
        head = _heads.for_client(response, self.request.method, self.request.http_version, self.client_keep_alive, extra)
        self.response_chunked = _heads.chunked
        self.response_keep_alive = _heads.keep_alive
        self.backend_keep_alive = response.keep_alive
        return head

    def response_complete(self) -> None:
        now = self.conn.context.clock.now()
        self.mstats.observe(now - self.started)
        backend = self.backend
        reusable = (
            backend is not None
            and self.backend_keep_alive
            and self.request_done
            and not backend.closed
        )
        self.finish()
        if backend is not None:
            if reusable:
                backend.release()
            else:
                backend.owner = None
                backend.close()
        keep_alive = self.response_keep_alive and self.client_keep_alive
        if self.request_done:
            self.conn.exchange_done(self, keep_alive)
        else:
            # The member answered before the body was all in (e.g. 413): the rest of
            # the body cannot be skipped safely, so this connection ends here.
            self.conn.exchange_done(self, False)

    def finish_upgrade(self, tail: bytes) -> None:
        backend = self.backend
        self.finish()
        assert backend is not None
        self.backend = None
        self.conn.start_tunnel(backend, tail, self.pool.tunnel_timeout)  # type: ignore[union-attr]

    def backend_eof(self, backend: BackendConnection) -> None:
        reader = self.reader
        try:
            events = reader.feed_eof() if reader is not None else []
        except ProtocolError as exc:
            self.member_lost(str(exc))
            return
        if events:
            self.forward(events)
        if not self.finished:
            self.member_lost("member closed the connection")

    def backend_lost(self, backend: BackendConnection, exc: Exception | None) -> None:
        if not self.finished and self.backend is backend:
            self.member_lost(f"member connection lost: {exc}" if exc else "member closed the connection")

    def backend_pause_writing(self) -> None:
        self.conn.gate.pause(_PEER_FULL)

    def backend_resume_writing(self) -> None:
        self.conn.gate.resume(_PEER_FULL)

    def member_lost(self, why: str) -> None:
        backend = self.backend
        reused = backend is not None and backend.reused
        if backend is not None:
            backend.owner = None
            backend.close()
            self.backend = None
        if not self.response_started and reused and not self.body_sent and self.request.content_length in (None, 0) and not self.request.chunked:
            # A pooled connection the member closed just as we reused it: safe to
            # replay on a fresh connection, since nothing of the request body is lost.
            self.pstats.retries += 1
            self.body_pending = ()
            member = self.member
            assert member is not None and self.pool is not None
            self.conn.loop.create_task(self._connect(self.member_pool(member), self.pool.connect_timeout))
            return
        log.info("%s: %s", self.member.data if self.member else "?", why)
        self.member_failed(502)

    def member_protocol_error(self, exc: ProtocolError) -> None:
        log.info("%s sent a bad response: %s", self.member.data if self.member else "?", exc)
        self.member_failed(502)

    def server_timeout(self) -> None:
        if not self.finished:
            self.member_failed(504)

    def member_failed(self, status: int) -> None:
        """The member broke the exchange: count it, drop its connection, answer ``status``.

        Once the response head went out there is no status left to send: the client
        connection is cut, which is how a client learns of a truncated response.
        """
        self.pstats.response_errors += 1
        self.mstats.response_errors += 1
        self.conn.worker.member_error(self.member, gateway=True)
        timeout = status == 504
        if self.response_started:
            self.termination = "sD" if timeout else "SD"
        else:
            self.termination = "sH" if timeout else "SH"
        if self.backend is not None:
            self.backend.owner = None
            self.backend.abort()
            self.backend = None
        if self.response_started:
            self.finish()
            self.conn.abort()
        else:
            self.fail(status)

    # -- endings ----------------------------------------------------------------------
    def answer(self, status: int, extra_headers=(), keep_alive: bool = True) -> None:
        """A response made here (redirect, error) for a request not sent anywhere.

        The connection stays open only when the request has no body to skip: a body
        we would have to read and throw away is better refused by closing.
        """
        request = self.request
        has_body = request.chunked or bool(request.content_length)
        keep_alive = keep_alive and self.client_keep_alive and not has_body
        self.status = status
        if self.termination == "--":
            self.termination = "LR" if 300 <= status < 400 else "PR"
        self.finish()
        self.response_started = True
        self.response_keep_alive = keep_alive
        self.conn.lstats.response(status)
        self.write_end(error_response(status, extra_headers=extra_headers, keep_alive=keep_alive), keep_alive)
        if not keep_alive:
            self.conn.exchange_done(self, False)
        elif self.request_done:
            self.conn.exchange_done(self, True)
        # else: the EndOfMessage still to come ends the exchange (client_event)

    def fail(self, status: int) -> None:
        """No usable response from a member: answer ``status`` and end the connection."""
        self.status = status
        if self.termination == "--":
            self.termination = "SC" if status in (502, 503) else "sH"
        self.finish()
        self.response_started = True
        extra = (("Retry-After", "1"),) if status == 503 else ()
        self.conn.lstats.response(status)
        if self.pstats is not None:
            self.pstats.response(status)
        self.conn.send_error(status, extra)

    def finish(self) -> None:
        if not self.finished:
            self.finished = True
            log_member = self.member
            self.release_member()
            self.free_slot()
            access_log = self.conn.context.access_logs.for_listener(self.listener.name)
            if access_log is not None:
                access_log.log(self.access_record(log_member))


    def free_slot(self) -> None:
        slot = self.slot
        if slot is not None:
            self.slot = None
            slot.free_slot()

    def release_member(self) -> None:
        member = self.member
        if member is not None:
            member.active -= 1
            self.member = None

    def abandon(self) -> None:
        """The client side gave up (timeout): drop the member connection."""
        if self.termination == "--":
            self.termination = "cD"
        backend = self.backend
        self.finish()
        if backend is not None:
            backend.owner = None
            backend.abort()
            self.backend = None

    def client_lost(self) -> None:
        if self.finished:
            return
        if self.response_started:
            self.termination = "CD"
        elif self.backend is not None:
            self.termination = "CH"
        elif self.slot is None and self.member is not None and self.pool is not None and self.pool.max_conns_per_member:
            self.termination = "CQ"
        else:
            self.termination = "CC"
        backend = self.backend
        self.finish()
        if backend is not None:
            backend.owner = None
            backend.abort()

    def access_record(self, member) -> AccessRecord:
        conn = self.conn
        request = self.request
        facts = self.facts
        pool = self.pool
        started = self.started
        now = self.conn.context.clock.now()
        t_request = started - conn.head_started
        if not t_request > 0.0:  # max(0.0, t_request), without the builtin call
            t_request = 0.0
        # Positional, in AccessRecord's field order (tests/unit/test_request_path.py
        # checks every field): matching 23 keywords cost more than the rest of this.
        # _records.make is AccessRecord(...), its slots filled without the interpreted
        # __init__; compiled, a C method (http.pxd), no tuple of 24 arguments.
        return _records.make(
            self.accepted,  # accepted
            started,  # started
            conn.client_ip_text,  # client_ip
            conn.client_port,  # client_port
            self.listener.name,  # listener
            self.acl,  # acl
            pool.name if pool is not None else None,  # pool
            member.name if member is not None else None,  # member
            request.method,  # method
            request.target,  # target
            request.http_version,  # http_version
            facts.header("host") if facts is not None else None,  # host
            facts.header("user-agent") if facts is not None else None,  # user_agent
            self.status,  # status
            self.body_received,  # bytes_in
            self.bytes_out,  # bytes_out
            None,  # t_tls
            t_request,  # t_request
            self.t_queue,  # t_queue
            self.t_connect,  # t_connect
            self.t_first_byte,  # t_first_byte
            now - started,  # t_total
            len(self.tried) - 1 if self.tried else 0,  # retries
            self.termination,  # termination
        )

    def redirect_location(self, redirect) -> str:
        request = self.request
        facts = RequestFacts(request.method, request.target, request.headers)
        scheme = redirect.scheme or self.listener.policy.proto
        host = redirect.host or facts.host or self.listener.spec.bind.host
        port = redirect.port
        if ":" in host:
            host = f"[{host}]"
        default_port = 443 if scheme == "https" else 80
        authority = host if port in (None, default_port) else f"{host}:{port}"
        target = request.target if request.target.startswith("/") else facts.path + (f"?{facts.query}" if facts.query else "")
        return f"{scheme}://{authority}{target}"


def new_exchange(conn: ClientConnection, request: Request) -> Exchange:
    """``Exchange(conn, request)``, made without the type call: one per request, and
    compiled, the call's argument parsing cost ~300 instructions."""
    ex = Exchange.__new__(Exchange)
    ex._setup(conn, request)
    return ex
