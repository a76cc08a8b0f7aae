"""Backend (member) connections and the per-member pool of idle ones.

A BackendConnection is one TCP connection to a member. While it carries an
exchange it forwards everything it reads to that exchange (its ``owner``); when
the exchange ends cleanly with a reusable response, the connection goes back to
its MemberPool's idle list, bounded by ``idle_max``. An idle connection closed by
the member simply drops out of the list. Pools are keyed by member address, not
by revision, so a reload keeps warm connections.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import deque
from typing import Protocol

from lbcore.l7.http1 import ResponseReader
from lbcore._fastpath import streams
from lbcore._fastpath.sockio import DescriptorWriter
from lbcore.proxy.flow import Deadline, ReadGate, transport_socket, writes_direct

__all__ = ["BackendConnection", "MemberPool", "BackendPools", "BackendOwner", "ConnectFailed", "OwnerBase"]

# Compiled, a C global (backend.pxd): ``ReadGate.PEER_FULL`` is a lookup on the class.
_PEER_FULL = ReadGate.PEER_FULL
_writer = DescriptorWriter()  # a direct write's send (sockio; typed in backend.pxd)


class ConnectFailed(Exception):
    """Connecting to a member failed; ``timeout`` tells a timeout from a refusal."""

    def __init__(self, message: str, timeout: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout


class BackendOwner(Protocol):
    def backend_data(self, conn: "BackendConnection", data: bytes) -> None: ...
    def backend_eof(self, conn: "BackendConnection") -> None: ...
    def backend_lost(self, conn: "BackendConnection", exc: Exception | None) -> None: ...
    def backend_pause_writing(self) -> None: ...
    def backend_resume_writing(self) -> None: ...


class OwnerBase:
    """Compiled (backend.pxd), the base of the engine's ``Exchange`` (http.pxd): a member
    connection hands its owner the member's bytes by a C call when the owner is one,
    where it called ``owner.backend_data`` by name (a lookup and a Python call per read).
    The pure build has no such base (http.py's ``Exchange`` names none): there, and for
    any other owner (a tunnel's, tcp.py's), the method is called by name."""

    __slots__ = ()

    def backend_data(self, backend: "BackendConnection", data: bytes) -> None:
        raise NotImplementedError


class BackendConnection:
    """One connection to a member: an asyncio protocol, not derived from
    ``asyncio.Protocol`` (see ``ClientConnection``: an extension type when compiled)."""

    # lifetime: connection
    __slots__ = ("pool", "transport", "sock", "fd", "direct", "handed", "stream", "gate", "owner", "closed", "reader",
                 "reused", "deadline", "connected")

    def __init__(self, pool: "MemberPool") -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.sock = None  # the transport's socket object, once connected
        self.direct = False  # write to sock while the transport holds nothing (see write)
        self.fd = -1  # sock's descriptor while direct, taken once (a write does not ask)
        self.handed = False  # bytes went to the transport since it was last seen empty
        self.stream = None  # the transport when it is a Stream: written to by a C call (see write)
        self.gate = ReadGate()
        self.closed = False
        self.connected: asyncio.Future[None] | None = None
        # lifetime: one exchange
        self.owner: BackendOwner | None = None
        self.reader: ResponseReader | None = None  # kept for the connection's life: one per connection
        self.reused = False
        # One lazy timer for the connection's whole life: the server timeout while an
        # exchange owns it, the idle timeout while it waits in the pool. (A timer per
        # request costs a heap entry, a handle and a reference cycle every time.)
        self.deadline = Deadline(pool.loop, self._expired)

    # -- asyncio.Protocol ---------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.gate.attach(self.transport)  # type: ignore[arg-type]
        self.sock = sock = transport_socket(transport)
        self.direct = sock is not None and writes_direct(transport)
        if self.direct:
            self.fd = sock.fileno()
        if type(transport) is streams.Stream:
            self.stream = transport  # compiled: typed (backend.pxd)
        elif sock is not None:  # a stream's connect set it
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def data_received(self, data: bytes) -> None:
        owner = self.owner
        if isinstance(owner, OwnerBase):
            typed_owner = owner  # compiled: typed (backend.pxd), backend_data a C call
            typed_owner.backend_data(self, data)
        elif owner is not None:
            owner.backend_data(self, data)
        else:
            # Bytes on an idle connection: the member broke framing; drop it.
            self.close()

    def eof_received(self) -> bool:
        owner = self.owner
        if owner is not None:
            owner.backend_eof(self)
        else:
            self.close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        self.deadline.close()
        owner = self.owner
        self.owner = None
        if owner is not None:
            owner.backend_lost(self, exc)

    def pause_writing(self) -> None:
        if self.owner is not None:
            self.owner.backend_pause_writing()

    def resume_writing(self) -> None:
        if self.owner is not None:
            self.owner.backend_resume_writing()

    # -- use ------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            stream = self.stream
            if stream is not None:
                # As ClientConnection.write: the stream sends at once itself; a C call.
                stream.write(data)
                return
            # Only this method hands the transport bytes: while it has not since the
            # transport was last seen empty, there is nothing to ask.
            if self.direct and (not self.handed or not self.transport.get_write_buffer_size()):
                self.handed = False
                # As ClientConnection.write: straight out while nothing waits in the
                # transport; the rest, or an error, is the transport's.
                sent = _writer.send_now(self.fd, data)
                if sent == len(data):
                    return
                if sent > 0:
                    data = data[sent:]
            self.handed = True
            self.transport.write(data)

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()
            self.pool.forget(self)

    def abort(self) -> None:
        if self.transport is not None:
            self.closed = True
            self.transport.abort()
            self.pool.forget(self)

    def release(self) -> None:
        """The exchange is done and the connection is clean: keep it for reuse."""
        self.owner = None
        self.gate.resume(_PEER_FULL)
        self.pool.put_idle(self)

    def _expired(self) -> None:
        owner = self.owner
        if owner is None:
            self.close()  # idle in the pool for idle_timeout
            return
        server_timeout = getattr(owner, "server_timeout", None)
        if server_timeout is not None:
            server_timeout()


class MemberPool:
    """Connections to one member address: the idle ones kept for reuse."""

    def __init__(self, loop: asyncio.AbstractEventLoop, host: str, port: int, connect_kwargs: dict | None = None) -> None:
        self.loop = loop
        self.host = host
        self.port = port
        self.connect_kwargs = connect_kwargs or {}  # ssl= and server_hostname= for TLS to the member
        # Plain TCP to an IP address: the connection is an lbcore stream, in the same
        # epoll set as the worker's client connections (lbcore._fastpath.streams). TLS to
        # the member, or a name to resolve: the loop's create_connection.
        self.on_streams = not self.connect_kwargs and streams.ip_family(host) != 0
        # Most recently used last (taken first: warmest). A list, not a deque: compiled,
        # appending and deleting are C calls (backend.pxd), a deque's are method calls.
        self.idle: list[BackendConnection] = []
        self.idle_max = 32
        self.idle_timeout = 60.0
        self.all: set[BackendConnection] = set()
        # Concurrency slots (max_connections_per_member): held by an exchange from
        # member choice to its end; over the limit, requests queue here in order.
        self.in_use = 0
        self.waiters: deque[asyncio.Future[None]] = deque()
        # counters, read by stats
        self.connects = 0
        self.reuses = 0
        self.connect_errors = 0

    def take_slot(self) -> None:
        self.in_use += 1

    def free_slot(self) -> None:
        self.in_use -= 1
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break

    async def wait_slot(self, limit: int, timeout: float) -> bool:
        """Queue until fewer than ``limit`` slots are in use; False on timeout."""
        deadline = self.loop.time() + timeout
        while self.in_use >= limit:
            left = deadline - self.loop.time()
            if left <= 0:
                return False
            waiter = self.loop.create_future()
            self.waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, left)
            except asyncio.TimeoutError:
                return False
        self.take_slot()
        return True

    def take_idle(self) -> BackendConnection | None:
        idle = self.idle
        while idle:
            # Most recently used first: warmest, least likely closed by the member. (Read
            # and deleted: compiled, a short list's pop() is a method call.)
            conn = idle[-1]
            del idle[-1]
            if conn.closed or conn.transport is None:
                continue
            stream = conn.stream  # compiled: a C call to the stream (backend.pxd)
            if not (stream.is_closing() if stream is not None else conn.transport.is_closing()):
                conn.reused = True
                self.reuses += 1
                return conn
        return None

    async def connect(self, timeout: float) -> BackendConnection:
        conn = BackendConnection(self)
        self.connects += 1
        try:
            if self.on_streams:
                await asyncio.wait_for(streams.connect(self.loop, lambda: conn, self.host, self.port), timeout)
            else:
                await asyncio.wait_for(self.loop.create_connection(lambda: conn, self.host, self.port, **self.connect_kwargs),
                                       timeout)
        except asyncio.TimeoutError:
            self.connect_errors += 1
            raise ConnectFailed(f"connect to {self.host}:{self.port} timed out", timeout=True) from None
        except (OSError, ssl.SSLError) as exc:
            self.connect_errors += 1
            raise ConnectFailed(f"connect to {self.host}:{self.port} failed: {getattr(exc, 'strerror', None) or exc}") from None
        self.all.add(conn)
        return conn

    def put_idle(self, conn: BackendConnection) -> None:
        if conn.closed or len(self.idle) >= self.idle_max:
            conn.close()
            return
        conn.deadline.extend(self.idle_timeout)
        self.idle.append(conn)

    def forget(self, conn: BackendConnection) -> None:
        self.all.discard(conn)
        try:
            self.idle.remove(conn)
        except ValueError:
            pass

    def close_all(self) -> None:
        for conn in list(self.all):
            conn.close()
        self.idle.clear()


class BackendPools:
    """MemberPools by member address, for one worker."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pools: dict[tuple[str, int, str], MemberPool] = {}

    def get(self, host: str, port: int, idle_max: int, idle_timeout: float, conn_key: str = "", connect_kwargs: dict | None = None) -> MemberPool:
        key = (host, port, conn_key)
        pool = self.pools.get(key)
        if pool is None:
            pool = self.pools[key] = MemberPool(self.loop, host, port, connect_kwargs)
        pool.idle_max = idle_max
        pool.idle_timeout = idle_timeout
        return pool

    def close_idle(self) -> None:
        for pool in self.pools.values():
            while pool.idle:
                pool.idle.pop().close()
