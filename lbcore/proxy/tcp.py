"""The TCP (layer-4) proxy: route a connection by client address, then shuttle bytes.

The member is chosen once per connection (ACLs may only look at ``src``), with the
pool's balancer and source persistence. Bytes the client sends before the member
connection is up are buffered up to BUFFER_HIGH, then the client is paused. Each
side's EOF is passed on as a half-close, so protocols that rely on it work. One
inactivity deadline covers both directions (``timeouts.client``, extended by
traffic either way).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from lbcore.l7.facts import RequestFacts
from lbcore.l7.persistence import SourcePersistence
from lbcore.proxy.accesslog import AccessRecord
from lbcore.proxy.backend import BackendConnection, ConnectFailed
from lbcore.proxy.flow import Deadline, ReadGate
from lbcore.proxy.runtime import parse_client
from lbcore.proxy.stats import ListenerCounters, MemberCounters
from lbcore.tls.clienthello import ClientHelloError, ClientHelloReader

if TYPE_CHECKING:  # pragma: no cover
    from lbcore.l7.balance import MemberState
    from lbcore.proxy.runtime import PoolRuntime
    from lbcore.proxy.worker import Worker

__all__ = ["TcpClient"]

log = logging.getLogger("lbcore.proxy.tcp")

BUFFER_HIGH = 64 * 1024

_NO_LISTENER_STATS = ListenerCounters()
_NO_MEMBER_STATS = MemberCounters()


class TcpClient(asyncio.Protocol):
    def __init__(self, worker: "Worker", listener_name: str, sniff_sni: bool = False) -> None:
        self.worker = worker
        self.loop = worker.loop
        self.listener_name = listener_name
        self.transport: asyncio.Transport | None = None
        self.gate = ReadGate()
        self.deadline = Deadline(self.loop, self._idle)
        self.backend: BackendConnection | None = None
        self.buffered: list[bytes] | None = []
        self.buffered_size = 0
        self.client_eof = False
        self.closed = False
        self.pool: PoolRuntime | None = None
        self.member: MemberState | None = None
        self.tried: list[MemberState] = []
        self.facts: RequestFacts | None = None
        self.idle_timeout = 30.0
        self.revision = None
        self.hello = ClientHelloReader() if sniff_sni else None  # tls-passthrough
        self.sni: str | None = None
        self.counted = False
        self.termination = "--"
        self.bytes_in = 0
        self.bytes_out = 0
        self.t_connect: float | None = None
        self.lstats = _NO_LISTENER_STATS
        self.pstats = None
        self.mstats = _NO_MEMBER_STATS

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.gate.attach(self.transport)  # type: ignore[arg-type]
        worker = self.worker
        listener = worker.revision.listeners.get(self.listener_name)
        if listener is None or not worker.admission.admit(self.listener_name, self):
            transport.close()
            self.closed = True
            return
        self.revision = worker.revision
        self.idle_timeout = listener.client_timeout
        self.accepted = time.time()
        self.started = time.monotonic()
        client_ip, client_port = parse_client(transport.get_extra_info("peername"))
        self.facts = RequestFacts("", "", (), client_ip, client_port)
        self.lstats = lstats = worker.stats.listener(self.listener_name)
        lstats.conns_total += 1
        lstats.conns_cur += 1
        lstats.requests += 1
        self.counted = True
        if self.hello is not None:
            # tls-passthrough: route once the ClientHello's SNI is known; the hello
            # must arrive within http_request (as a request head would).
            self.deadline.extend(listener.http_request_timeout)
            return
        self.deadline.extend(self.idle_timeout)
        self.route(listener)

    def route(self, listener) -> None:
        """Choose the pool (ACLs on src, and ssl_sni for passthrough) and a member."""
        route = listener.router.route(self.facts)
        pool = self.revision.pools.get(route.pool) if route.pool else None
        if pool is None:
            self.termination = "PR"
            self.close()
            return
        self.pool = pool
        self.pstats = self.worker.stats.pool(pool.name)
        self.pstats.requests += 1
        member = None
        if isinstance(pool.persistence, SourcePersistence):
            member = pool.persistence.lookup(self.facts, pool.by_name, self.loop.time())
        if member is None:
            member = pool.balancer.pick(self.facts, self.tried)
        if member is None:
            self.pstats.no_member += 1
            self.termination = "SC"
            self.close()
            return
        self.connect(member)

    def sniff(self, data: bytes) -> None:
        """tls-passthrough: read the ClientHello (never terminating TLS), then route by SNI."""
        hello_reader = self.hello
        try:
            hello = hello_reader.feed(data)
        except ClientHelloError as exc:
            log.debug("%s: not a TLS ClientHello: %s", self.listener_name, exc)
            self.termination = "PR"
            self.close()
            return
        if hello is None:
            return  # need more bytes
        self.hello = None
        self.facts.sni = hello.server_name
        self.sni = hello.server_name
        self.buffered = [bytes(hello_reader.raw)]
        self.buffered_size = len(self.buffered[0])
        self.gate.pause(ReadGate.BUFFERED)  # nothing more is read until the member is connected
        self.deadline.extend(self.idle_timeout)
        listener = self.revision.listeners[self.listener_name]
        self.route(listener)

    def connect(self, member: "MemberState") -> None:
        assert self.pool is not None
        self.member = member
        self.mstats = self.worker.stats.member(self.pool.name, member.name)
        self.mstats.requests += 1
        member.active += 1
        self.tried.append(member)
        info = member.data
        pool = self.pool
        mpool = self.worker.backends.get(info.host, info.port, 0, pool.keepalive_timeout, pool.conn_key, pool.connect_kwargs)
        self.loop.create_task(self._connect(mpool, pool.connect_timeout))

    async def _connect(self, mpool, timeout: float) -> None:
        connect_at = time.monotonic()
        try:
            backend = await mpool.connect(timeout)
        except ConnectFailed as exc:
            self._connect_failed(exc)
            return
        self.t_connect = time.monotonic() - connect_at
        self.mstats.conns_total += 1
        if self.closed:
            backend.close()
            return
        if backend.closed:
            self._connect_failed(ConnectFailed(f"{mpool.host}:{mpool.port} closed the connection at once"))
            return
        self.worker.member_ok(self.member)
        self.attach(backend)

    def _connect_failed(self, exc: ConnectFailed) -> None:
        self.pstats.connect_errors += 1
        self.mstats.connect_errors += 1
        self.worker.member_error(self.member, gateway=True)
        log.info("%s: %s", self.member.data if self.member else "?", exc)
        self._release_member()
        if self.closed:
            return
        assert self.pool is not None
        if len(self.tried) <= self.pool.retries:
            member = self.pool.balancer.pick(self.facts, self.tried)
            if member is not None:
                self.pstats.redispatches += 1
                self.connect(member)
                return
        self.termination = "sC" if exc.timeout else "SC"
        self.close()

    def attach(self, backend: BackendConnection) -> None:
        self.backend = backend
        backend.owner = self
        assert self.pool is not None
        if isinstance(self.pool.persistence, SourcePersistence) and self.member is not None:
            self.pool.persistence.record(self.facts, self.member, self.loop.time())
        buffered = self.buffered or ()
        self.buffered = None
        if buffered:
            backend.write(b"".join(buffered))
        self.gate.resume(ReadGate.BUFFERED)
        if self.client_eof and backend.transport is not None and backend.transport.can_write_eof():
            backend.transport.write_eof()

    # -- client side ----------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self.lstats.bytes_in += len(data)
        self.bytes_in += len(data)
        if self.hello is not None:
            self.sniff(data)
            return
        self.deadline.extend(self.idle_timeout)
        backend = self.backend
        if backend is not None:
            self.mstats.bytes_out += len(data)
            backend.write(data)
            return
        if self.buffered is not None:
            self.buffered.append(data)
            self.buffered_size += len(data)
            if self.buffered_size > BUFFER_HIGH:
                self.gate.pause(ReadGate.BUFFERED)

    def eof_received(self) -> bool:
        self.client_eof = True
        backend = self.backend
        if backend is not None and backend.transport is not None and backend.transport.can_write_eof():
            backend.transport.write_eof()
        return True  # keep our write side open for the member's remaining bytes

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.deadline.close()
        if self.counted:
            self.lstats.conns_cur -= 1
            self.log_access()
        self.worker.admission.release(self.listener_name, self)
        backend = self.backend
        self.backend = None
        if backend is not None:
            backend.owner = None
            backend.close()
        self._release_member()

    def pause_writing(self) -> None:
        if self.backend is not None:
            self.backend.gate.pause(ReadGate.PEER_FULL)

    def resume_writing(self) -> None:
        if self.backend is not None:
            self.backend.gate.resume(ReadGate.PEER_FULL)

    # -- member side (BackendOwner) ------------------------------------------------------
    def backend_data(self, conn: BackendConnection, data: bytes) -> None:
        self.deadline.extend(self.idle_timeout)
        self.mstats.bytes_in += len(data)
        if self.transport is not None and not self.closed:
            self.lstats.bytes_out += len(data)
            self.bytes_out += len(data)
            self.transport.write(data)

    def backend_eof(self, conn: BackendConnection) -> None:
        transport = self.transport
        if transport is not None and not self.closed and transport.can_write_eof():
            transport.write_eof()
        if self.client_eof:
            self.close()

    def backend_lost(self, conn: BackendConnection, exc: Exception | None) -> None:
        self.backend = None
        self.close()

    def backend_pause_writing(self) -> None:
        self.gate.pause(ReadGate.PEER_FULL)

    def backend_resume_writing(self) -> None:
        self.gate.resume(ReadGate.PEER_FULL)

    # -- teardown -----------------------------------------------------------------------
    def _release_member(self) -> None:
        if self.member is not None:
            self.member.active -= 1
            self.member = None

    def log_access(self) -> None:
        access_log = self.worker.access_logs.for_listener(self.listener_name)
        if access_log is None:
            return
        facts = self.facts
        access_log.log(
            AccessRecord(
                accepted=self.accepted,
                started=self.started,
                client_ip=str(facts.client_ip) if facts is not None and facts.client_ip is not None else "",
                client_port=facts.client_port if facts is not None else 0,
                listener=self.listener_name,
                pool=self.pool.name if self.pool is not None else None,
                member=self.tried[-1].name if self.tried else None,
                bytes_in=self.bytes_in,
                bytes_out=self.bytes_out,
                t_connect=self.t_connect,
                t_total=time.monotonic() - self.started,
                retries=max(0, len(self.tried) - 1),
                termination=self.termination,
                sni=self.sni,
                mode="tcp",
            )
        )

    def _idle(self) -> None:
        self.termination = "cR" if self.hello is not None else "cD"
        if self.transport is not None:
            self.transport.abort()
        if self.backend is not None:
            self.backend.abort()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.deadline.cancel()
            if self.transport is not None:
                self.transport.close()

    def shutdown(self) -> None:
        """Graceful stop: a TCP stream has no request boundary; it runs until the drain deadline."""
