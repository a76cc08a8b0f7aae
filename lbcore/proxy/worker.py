"""A worker process: one uvloop event loop serving every listener.

Started by the supervisor as ``python -m lbcore.proxy.worker --control-fd N``. It
receives, over the control channel, a Spec revision and the listening sockets it
has not got yet; it compiles the revision, swaps it in (requests in flight keep
the one they started on), opens servers for new bind addresses, closes servers
for removed ones, and answers ``applied``. On ``stop`` (or SIGTERM) it stops
accepting, lets open connections finish, and exits by the drain deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import logging
import math
import os
import signal
import socket
import sys
import time
from typing import Any

from lbcore import spec as S
from lbcore._fastpath import streams
from lbcore._fastpath.tlsconn import TlsServer
from lbcore.proxy.accesslog import AccessLogs
from lbcore.proxy.backend import BackendPools
from lbcore.proxy.channel import Channel
from lbcore.proxy.flow import Admission, direct_socket, untrack_transports
from lbcore.proxy.heap import tune_malloc
from lbcore.proxy.http import ProtocolFactory, WorkerContext
from lbcore.proxy.runtime import MemberRegistry, Revision, compile_revision
from lbcore.proxy.stats import FLUSH_INTERVAL, WorkerStats
from lbcore.proxy.tcp import TcpClient
from lbcore.tls.revision import compile_tls

__all__ = ["Worker", "main"]

log = logging.getLogger("lbcore.worker")

RAMP_STEP = 0.5  # seconds between slow-start weight updates
GC_THRESHOLD = 20_000  # allocations between young-generation collections (CPython's default: 700)
TICKET_KEYS_CHECK = 2.0  # seconds between checks of TLS ticket key files for rotation


class Worker:
    def __init__(self, loop: asyncio.AbstractEventLoop, channel: Channel, index: int, nworkers: int) -> None:
        # lifetime: process
        self.loop = loop
        self.channel = channel
        self.index = index
        self.nworkers = max(1, nworkers)
        self.registry = MemberRegistry()
        self.backends = BackendPools(loop)
        self.stats = WorkerStats()
        self.access_logs = AccessLogs(worker=index, loop=loop)
        # Member state decided by the supervisor (health, runtime overrides), by
        # "pool/member"; re-applied to every new revision's MemberStates.
        self.member_states: dict[str, dict[str, Any]] = {}
        self.ramping = False  # a slow-start ramp timer is running
        self.stopped = loop.create_future()
        # lifetime: bind address (kept across revisions while the address stays)
        self.servers: dict[str, tuple[streams.Acceptor, object]] = {}  # bind -> (server, TLS context)
        self.bind_fds: dict[str, int] = {}  # bind -> the listening socket's fd (ours; servers get dups)
        self.ticket_files: dict = {}  # TLS ticket key files, kept across revisions
        # Open client connections per listener and each listener's maxconn share (the
        # connections admit and release themselves).
        self.admission = Admission(self.stats)
        # What the connections read on every request: the tables above, the current
        # revision, the bind table, the stopping flag and the passive-check counts
        # (the properties below).
        self.context = WorkerContext(loop, self.stats, self.backends, self.access_logs, self.admission)

    # -- state kept in the context ----------------------------------------------------
    @property
    def revision(self) -> Revision | None:
        return self.context.revision

    @revision.setter
    def revision(self, revision: Revision) -> None:
        self.context.revision = revision

    @property
    def bind_listener(self) -> dict[str, str]:
        """Bind key -> listener name in the current revision."""
        return self.context.bind_listener

    @bind_listener.setter
    def bind_listener(self, table: dict[str, str]) -> None:
        self.context.bind_listener = table

    @property
    def stopping(self) -> bool:
        return self.context.stopping

    @stopping.setter
    def stopping(self, stopping: bool) -> None:
        self.context.stopping = stopping

    @property
    def passive(self) -> dict[str, list[int]]:
        """Passive checks: consecutive (gateway errors, 5xx) per "pool/member"."""
        return self.context.passive

    # -- connection accounting ------------------------------------------------------
    def tls_failed(self, listener: str) -> None:
        """A connection to an https listener ended before its TLS handshake completed."""
        self.stats.listener(listener).tls_failed += 1

    # -- member state: health, runtime overrides, slow start, passive checks ---------
    def apply_member_states(self) -> None:
        """Push the supervisor's member states into the current revision's MemberStates."""
        revision = self.revision
        if revision is None:
            return
        now = time.time()
        ramping = False
        for pool in revision.pools.values():
            slow_start = getattr(pool.spec, "slow_start", 0.0) or 0.0
            for member, spec_member in zip(pool.members, pool.spec.members):
                state = self.member_states.get(f"{pool.name}/{member.name}")
                weight = spec_member.weight
                member.admin = spec_member.admin_state
                member.up = True
                if state is not None:
                    member.up = bool(state.get("up", True))
                    if state.get("admin"):
                        member.admin = state["admin"]
                    if state.get("weight") is not None:
                        weight = int(state["weight"])
                    since = state.get("since")
                    if member.up and slow_start > 0 and since and weight > 0 and now - since < slow_start:
                        # Slow start: ramp from 1 to the full weight over slow_start seconds.
                        weight = max(1, math.ceil(weight * (now - since) / slow_start))
                        ramping = True
                member.weight = weight
            pool.balancer.update()
        if ramping and not self.ramping:
            self.ramping = True
            self.loop.call_later(RAMP_STEP, self._ramp)

    def _ramp(self) -> None:
        self.ramping = False
        self.apply_member_states()

    def member_ok(self, member) -> None:
        if not self.passive:  # no member has failed since the counts were last cleared
            return
        counts = self.passive.get(member.data.pool + "/" + member.name)
        if counts is not None:
            counts[0] = counts[1] = 0

    def member_error(self, member, gateway: bool) -> None:
        """Passive check: consecutive errors from a member eject it early.

        ``gateway``: the member failed at the transport level (refused, reset, timed
        out, broken response) -- counted by ``consecutive_errors``. Every failure,
        gateway or a 5xx the member sent, counts towards ``consecutive_5xx`` (as
        Envoy's consecutive_5xx, which includes locally originated errors).
        """
        if member is None:
            return
        pool = self.revision.pools.get(member.data.pool)
        outlier = getattr(pool.spec, "outlier", None) if pool is not None else None
        if outlier is None:
            return
        key = f"{member.data.pool}/{member.name}"
        counts = self.passive.setdefault(key, [0, 0])
        counts[1] += 1
        if gateway:
            counts[0] += 1
        limit_errors = getattr(outlier, "consecutive_errors", 0) or 0
        limit_5xx = getattr(outlier, "consecutive_5xx", 0) or 0
        if (limit_errors and counts[0] >= limit_errors) or (limit_5xx and counts[1] >= limit_5xx):
            counts[0] = counts[1] = 0
            if member.up:
                member.up = False  # locally at once; the supervisor tells every worker
                pool.balancer.update()
                self.report({"op": "passive_down", "pool": member.data.pool, "member": member.name,
                             "reason": "consecutive errors" if gateway else "consecutive 5xx responses"})

    # -- TLS session ticket keys ---------------------------------------------------------
    def refresh_ticket_keys(self) -> None:
        """Key files are re-read when they change: rotation needs no restart."""
        revision = self.revision
        if revision is not None and revision.tls is not None and revision.tls.ticket_files:
            for issue in revision.tls.refresh_ticket_keys():
                log.error("worker %d: %s", self.index, issue)
        if not self.stopping:
            self.loop.call_later(TICKET_KEYS_CHECK, self.refresh_ticket_keys)

    # -- stats ------------------------------------------------------------------------
    def flush_stats(self) -> None:
        revision = self.revision
        active = []
        if revision is not None:
            active = [(p.name, m.name, m.active) for p in revision.pools.values() for m in p.members]
        self.report({"op": "stats", "stats": self.stats.take(active)})
        if not self.stopping:
            self.loop.call_later(FLUSH_INTERVAL, self.flush_stats)

    # -- control messages -------------------------------------------------------------
    async def apply(self, message: dict[str, Any], fds: list[int]) -> None:
        try:
            spec = S.parse_spec(message["spec"])
            tls, _warnings = compile_tls(spec, message.get("base_dir", "."), ticket_files=self.ticket_files)
            revision = compile_revision(spec, self.registry, tls)
        except Exception as exc:  # the supervisor validated it: this is a bug, keep serving
            for fd in fds:
                os.close(fd)
            log.error("worker %d: cannot apply revision: %s", self.index, exc)
            self.report({"op": "error", "error": str(exc)})
            return
        self.ticket_files = tls.ticket_files
        for key, fd in zip(message.get("fd_binds", []), fds):
            old = self.bind_fds.pop(key, None)
            if old is not None:
                os.close(old)
            self.bind_fds[key] = fd
        self.revision = revision
        self.access_logs.apply(spec)
        self.apply_member_states()
        self.bind_listener = {str(l.bind): l.name for l in spec.listeners}
        self.admission.maxconn = {l.name: math.ceil(l.maxconn / self.nworkers) for l in spec.listeners}
        for key in list(self.servers):
            if key not in self.bind_listener:
                self.servers.pop(key)[0].close()
                os.close(self.bind_fds.pop(key))
        for listener in spec.listeners:
            await self.serve_listener(listener, revision)
        self.report({"op": "applied", "revision": revision.id, "pid": os.getpid()})

    async def serve_listener(self, listener: S.Listener, revision: Revision) -> None:
        """Have a server accepting on the listener's socket, with this revision's TLS.

        A server's TLS context is fixed when it is created, so an https listener gets
        a new server for each revision's contexts: the new server starts accepting on
        the same socket before the old one stops (no refused connection), and
        connections the old one accepted finish with their own context.
        """
        key = str(listener.bind)
        fd = self.bind_fds.get(key)
        if fd is None:
            log.error("worker %d: no socket for %s", self.index, key)
            return
        tls = revision.listeners[listener.name].tls
        context = tls.context if tls is not None else None
        current = self.servers.get(key)
        if current is not None and current[1] is context:
            # Same server; a new backlog still applies: listen() on a listening socket
            # sets its queue's length (shared by every worker on a shared socket).
            try:
                relisten = socket.socket(fileno=fd)
                try:
                    relisten.listen(listener.backlog)
                finally:
                    relisten.detach()
            except OSError as exc:  # the queue keeps its length; the listener serves on
                log.error("worker %d: listener %s: backlog %d not set: %s", self.index, listener.name,
                          listener.backlog, exc)
            return
        terminator = None
        if tls is not None:
            # TLS is terminated by lbcore's own layer over a plain TCP transport
            # (lbcore._fastpath.tlsconn), not by the loop's ssl= support.
            terminator = TlsServer(tls.contexts, tls.store.sni.lookup, tls.store.sni.default_index,
                                   listener.timeouts.http_request, self.loop,
                                   functools.partial(self.tls_failed, listener.name), direct_socket)
        factory = ProtocolFactory(self, key, TcpClient, terminator)
        # The acceptor owns (and closes) the socket it is given: hand it a duplicate, keep ours.
        # lbcore's own accept path and transports (lbcore._fastpath.streams), not the
        # loop's create_server: a uvloop transport costs ~10k instructions a connection.
        sock = socket.socket(fileno=os.dup(fd))
        sock.setblocking(False)
        sock.listen(listener.backlog)
        server = streams.serve(self.loop, sock, factory)
        self.servers[key] = (server, context)
        if current is not None:
            current[0].close()

    def report(self, message: dict[str, Any]) -> None:
        try:
            self.channel.send(message)
        except OSError:
            # The supervisor is gone; on_control sees the EOF and stops us.
            pass

    def on_control(self) -> None:
        try:
            messages = self.channel.receive()
        except (OSError, ValueError) as exc:
            log.error("worker %d: control channel: %s", self.index, exc)
            messages = None
        if messages is None:
            # The supervisor is gone: nobody will restart or stop us; stop gracefully.
            self.loop.remove_reader(self.channel.fileno())
            self.begin_stop(5.0)
            return
        for message, fds in messages:
            self.handle(message, fds)

    def handle(self, message: dict[str, Any], fds: list[int]) -> None:
        op = message.get("op")
        if op == "spec":
            self.loop.create_task(self.apply(message, fds))
        elif op == "members":
            self.member_states = message.get("states", {})
            self.apply_member_states()
        elif op == "stop":
            self.begin_stop(float(message.get("deadline", 30.0)))
        else:
            log.warning("worker %d: unknown control message %r", self.index, op)

    def begin_stop(self, deadline: float) -> None:
        if self.stopping:
            return
        self.stopping = True
        for server, _context in self.servers.values():
            server.close()
        self.servers.clear()
        admission = self.admission
        admission.on_idle = self._all_closed  # set first: a shutdown may release at once
        for conn in admission.all():
            conn.shutdown()
        self.backends.close_idle()
        if not admission.open():
            admission.on_idle = None
            self._all_closed()
        self.loop.call_later(deadline, lambda: self.stopped.done() or self.stopped.set_result(None))

    def _all_closed(self) -> None:
        if not self.stopped.done():
            self.stopped.set_result(None)


async def run(channel: Channel, index: int, nworkers: int) -> None:
    loop = asyncio.get_running_loop()
    untrack_transports(loop)  # uvloop's pure-Python transport table: ~6% of an accept (flow.py)
    # What start-up allocated lives as long as the process: keep it out of every
    # collection. And collect young objects less often: the request path frees its
    # objects by reference counting, so cycle collection is mostly wasted work
    # (it was ~12% of a worker's CPU under keep-alive load at the default 700).
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 20)
    worker = Worker(loop, channel, index, nworkers)
    channel.sock.setblocking(True)
    message = channel.receive_blocking()
    if message is None:
        return
    channel.sock.setblocking(False)
    await worker.apply(*message)
    for later in channel.take_ready():
        worker.handle(*later)
    loop.add_reader(channel.fileno(), worker.on_control)
    loop.call_later(FLUSH_INTERVAL, worker.flush_stats)
    loop.call_later(TICKET_KEYS_CHECK, worker.refresh_ticket_keys)
    loop.add_signal_handler(signal.SIGTERM, worker.begin_stop, 30.0)
    loop.add_signal_handler(signal.SIGUSR1, worker.access_logs.reopen)
    worker.access_logs.start(loop)
    loop.add_signal_handler(signal.SIGINT, lambda: None)  # the supervisor decides
    await worker.stopped
    worker.access_logs.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lbcore-worker")
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format=f"%(asctime)s lbcore[worker {args.index} pid %(process)d] %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    log.debug("%s", tune_malloc())
    channel = Channel(socket.socket(fileno=args.control_fd))
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; asyncio still works
        asyncio.run(run(channel, args.index, args.workers))
    else:
        uvloop.run(run(channel, args.index, args.workers))


if __name__ == "__main__":
    main()
