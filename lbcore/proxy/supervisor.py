"""The supervisor: binds every listening socket once, runs N workers, reloads, stops.

Theory of operation
- Sockets are bound here, once per bind address, and handed to workers over their
  control channel (SCM_RIGHTS). Workers are fresh interpreters (not forks of a
  process with a running event loop), so a worker started later, to replace one
  that died, gets exactly the same sockets.
- A listening socket stays open in the supervisor for as long as a revision binds
  its address: connections arriving during a reload or a worker restart wait in
  the kernel's accept queue instead of being refused.
- A listener with ``shards: per-worker`` has one socket per worker index, bound
  with SO_REUSEPORT: the kernel spreads its connections evenly over the workers,
  where with one shared socket the first worker to wake takes them (Linux wakes the
  last waiter first, so under light load one worker can take every connection).
  Worker ``i`` only ever gets socket ``i``; a connection the kernel put in the queue
  of a worker that is restarting waits there for its successor.
- SIGHUP reloads the file. The new Spec is validated whole; a bad one is refused,
  the error logged, and the running revision keeps serving. A good one is sent to
  every worker, which swaps it in while requests in flight finish on the old one.
- SIGTERM / SIGINT stop gracefully: workers stop accepting, finish what is in flight
  and exit by the drain deadline; stragglers are killed after it.
- Signal handlers only record the signal; the main loop dispatches
  ``handle_<signal>`` so no work runs inside a handler.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

from lbcore import spec as S
from lbcore.proxy.admin import AdminServer
from lbcore.proxy.agent import NodeAgent
from lbcore.proxy.channel import Channel
from lbcore.proxy.runtime_socket import RuntimeSocketServer
from lbcore.proxy.health import HealthMonitor
from lbcore.proxy.state import MemberBook
from lbcore.proxy.stats import Aggregate
from lbcore.tls import TlsError
from lbcore.tls.revision import compile_tls

__all__ = ["Supervisor", "bind_socket", "serve"]

log = logging.getLogger("lbcore.supervisor")

RESPAWN_BACKOFF = 1.0  # seconds before restarting a worker that died right after starting
KILL_GRACE = 5.0  # seconds after the drain deadline before stragglers get SIGKILL


def bind_socket(address: S.Address, backlog: int, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            # [::]:80 and 0.0.0.0:80 are distinct listeners, as in haproxy's "v6only".
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address.host, address.port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(False)
    return sock


def bind_shards(listener: S.Listener, workers: int) -> tuple[socket.socket, ...]:
    """The listening sockets of one listener: one, or one per worker; all or none."""
    if listener.shards == "shared":
        return (bind_socket(listener.bind, listener.backlog),)
    sockets: list[socket.socket] = []
    try:
        for _ in range(workers):
            sockets.append(bind_socket(listener.bind, listener.backlog, reuse_port=True))
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return tuple(sockets)


class WorkerHandle:
    def __init__(self, index: int, proc: subprocess.Popen, channel: Channel) -> None:
        self.index = index
        self.proc = proc
        self.channel = channel
        self.binds: set[str] = set()  # bind keys whose socket this worker has
        self.revision: str | None = None  # last revision it applied
        self.started = time.monotonic()
        self.stopping = False


class NeedsRestart(OSError):
    """A revision that is valid but cannot be applied to the sockets that serve now
    (a serving address's shards changed): it takes a restart."""


class Supervisor:
    def __init__(self, spec_path: str | os.PathLike, workers: int | None = None, log_level: str = "INFO",
                 agent: tuple[str, int, ssl.SSLContext] | None = None) -> None:
        self.spec_path = Path(spec_path)
        # Relative certificate and key paths in the Spec are relative to its file.
        self.base_dir = str(self.spec_path.resolve().parent)
        self.nworkers = workers or os.cpu_count() or 1
        self.log_level = log_level
        self.spec: S.Spec | None = None
        # bind key -> its listening sockets: one (shared) or one per worker index
        self.sockets: dict[str, tuple[socket.socket, ...]] = {}
        self.workers: dict[int, WorkerHandle] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopping = False
        self.done: asyncio.Future[None] | None = None
        self._announced: str | None = None
        self.announced_event = asyncio.Event()
        self.material = ""  # digest of the TLS files of the current revision
        # The revision of the file that the last reload refused because it takes a
        # restart (NeedsRestart): the file stays as it is, to be served from the next start.
        self.needs_restart: str | None = None
        self.aggregate = Aggregate()
        self.agent_settings = agent
        self.agent: NodeAgent | None = None
        self.admin_server: AdminServer | None = None
        self.runtime_socket: RuntimeSocketServer | None = None
        self.book = MemberBook(self.broadcast_members)

    # -- start ------------------------------------------------------------------------
    def load(self) -> S.Spec:
        """Read and validate the file whole, certificates and keys included."""
        spec = S.load_spec(self.spec_path)
        try:
            _tls, warnings = compile_tls(spec, self.base_dir)
        except TlsError as exc:
            raise S.SpecError([S.SpecIssue(i.path, i.message) for i in exc.issues]) from None
        for warning in warnings:
            log.warning("%s", warning)
        return spec

    def bind_all(self, spec: S.Spec) -> dict[str, tuple[socket.socket, ...]]:
        """Bind the addresses ``spec`` needs that are not bound yet; all or nothing.

        An address already bound keeps its sockets, so its sharding cannot change
        while it serves: splitting a socket, or merging several, would drop the
        connections waiting in the queues that close. That takes a restart.
        """
        serving = {str(l.bind): l.shards for l in self.spec.listeners} if self.spec is not None else {}
        for listener in spec.listeners:
            key = str(listener.bind)
            was = serving.get(key, listener.shards)
            if key in self.sockets and was != listener.shards and self.nworkers > 1:
                raise NeedsRestart(errno.EBUSY, f"listener {listener.name}: {key} serves with shards: {was}; "
                                                f"changing it to {listener.shards} needs a restart")
        new: dict[str, tuple[socket.socket, ...]] = {}
        try:
            for listener in spec.listeners:
                key = str(listener.bind)
                if key not in self.sockets and key not in new:
                    new[key] = bind_shards(listener, self.nworkers)
        except OSError as exc:
            for socks in new.values():
                for sock in socks:
                    sock.close()
            raise OSError(exc.errno, f"cannot bind {key}: {exc.strerror}") from None
        return new

    async def run(self) -> int:
        self.loop = asyncio.get_running_loop()
        self.done = self.loop.create_future()
        try:
            self.spec = self.load()
            self.material = self.material_digest(self.spec)
        except S.SpecError as exc:
            log.error("refusing %s:\n%s", self.spec_path, exc)
            return 2
        try:
            self.sockets.update(self.bind_all(self.spec))
        except OSError as exc:
            log.error("%s", exc.strerror)
            return 1
        log.info(
            "revision %s: %d listeners, %d pools, %d workers",
            self.spec.revision,
            len(self.spec.listeners),
            len(self.spec.pools),
            self.nworkers,
        )
        self.book.apply(self.spec)
        self.health = HealthMonitor(self.loop, self.on_health_change)
        self.book.health = self.health
        self.health.apply(self.spec)
        for index in range(self.nworkers):
            self.spawn(index)
        await self.start_admin(self.spec)
        if self.agent_settings is not None:
            host, port, context = self.agent_settings
            self.agent = NodeAgent(self, host, port, context)
            try:
                await self.agent.start()
            except OSError as exc:
                log.error("node agent %s:%d: %s", host, port, exc.strerror)
                self.handle_sigterm()
        # Worker exits are seen as EOF on their control channel (uvloop keeps SIGCHLD).
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
            self.loop.add_signal_handler(signum, self._signal, signum)
        await self.done
        await self.health.close()
        await self.stop_admin()
        if self.agent is not None:
            await self.agent.close()
        return 0

    def _signal(self, signum: int) -> None:
        # Only enqueue: the handler runs the dispatch on the next loop turn.
        assert self.loop is not None
        name = signal.Signals(signum).name.lower()
        self.loop.call_soon(getattr(self, f"handle_{name}"))

    # -- workers ----------------------------------------------------------------------
    def spawn(self, index: int) -> None:
        assert self.spec is not None and self.loop is not None
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        cmd = [
            sys.executable,
            "-m",
            "lbcore.proxy.worker",
            "--control-fd",
            str(child.fileno()),
            "--index",
            str(index),
            "--workers",
            str(self.nworkers),
            "--log-level",
            self.log_level,
        ]
        proc = subprocess.Popen(cmd, pass_fds=[child.fileno()], close_fds=True)
        child.close()
        handle = WorkerHandle(index, proc, Channel(parent))
        self.workers[index] = handle
        self.send_spec(handle)
        self.send(handle, {"op": "members", "states": self.book.worker_states()})
        parent.setblocking(False)
        self.loop.add_reader(parent.fileno(), self._on_worker_message, handle)
        log.info("worker %d started, pid %d", index, proc.pid)

    def send_spec(self, handle: WorkerHandle) -> None:
        """Send the current revision, with the listening sockets the worker lacks."""
        assert self.spec is not None
        keys = [str(l.bind) for l in self.spec.listeners]
        missing = [k for k in dict.fromkeys(keys) if k not in handle.binds]
        fds = [self.socket_for(k, handle.index).fileno() for k in missing]
        message = {"op": "spec", "spec": self.spec.to_dict(), "fd_binds": missing, "base_dir": self.base_dir}
        if self.send(handle, message, fds):
            handle.binds.update(missing)

    def socket_for(self, key: str, index: int) -> socket.socket:
        """The listening socket of ``key`` that worker ``index`` accepts from."""
        socks = self.sockets[key]
        return socks[index] if len(socks) > 1 else socks[0]

    def send(self, handle: WorkerHandle, message: dict, fds: list[int] | None = None) -> bool:
        sock = handle.channel.sock
        blocking = sock.getblocking()
        sock.settimeout(10.0)  # a worker that does not read its channel for 10 s is broken
        try:
            handle.channel.send(message, fds or ())
            return True
        except OSError as exc:
            log.error("worker %d: control channel: %s", handle.index, exc)
            return False
        finally:
            sock.setblocking(blocking)

    def broadcast_members(self) -> None:
        """Health or runtime state changed: every worker gets the whole member table."""
        if self.spec is None or self.stopping:
            return
        message = {"op": "members", "states": self.book.worker_states()}
        for handle in self.workers.values():
            self.send(handle, message)

    def on_health_change(self, pool: str, member: str, up: bool, result) -> None:
        # (the health monitor logs the change itself)
        self.book.health_changed(pool, member, up)

    # -- operator surfaces: admin HTTP listener (/metrics, /stats), runtime socket ------
    def snapshot(self) -> dict:
        return self.book.snapshot(self.aggregate, len(self.workers))

    async def start_admin(self, spec: S.Spec) -> None:
        admin = spec.admin
        controller = SupervisorController(self)
        if admin.socket:
            server = RuntimeSocketServer()
            try:
                await server.start(admin.socket, controller)
                self.runtime_socket = server
            except OSError as exc:
                log.error("runtime socket %s: %s", admin.socket, exc)
        if admin.bind is not None:
            server = AdminServer()
            try:
                await server.start(admin.bind.host, admin.bind.port, controller,
                                   stats_page=admin.stats_page, metrics=admin.metrics)
                self.admin_server = server
            except OSError as exc:
                log.error("admin listener %s: %s", admin.bind, exc)

    async def stop_admin(self) -> None:
        for name in ("admin_server", "runtime_socket"):
            server = getattr(self, name, None)
            if server is not None:
                setattr(self, name, None)
                server.close()
                await server.wait_closed()

    async def restart_admin(self, spec: S.Spec) -> None:
        await self.stop_admin()
        await self.start_admin(spec)

    def passive_down(self, pool: str, member: str, reason: str) -> None:
        log.warning("member %s/%s ejected by passive checks: %s", pool, member, reason)
        if self.book.health is not None:
            self.book.health.report_passive(pool, member, reason)

    def _on_worker_message(self, handle: WorkerHandle) -> None:
        try:
            messages = handle.channel.receive()
        except (OSError, ValueError):
            messages = None
        if messages is None:
            self.worker_exited(handle)
            return
        for message, fds in messages:
            for fd in fds:
                os.close(fd)
            op = message.get("op")
            if op == "applied":
                handle.revision = message.get("revision")
                self._announce()
            elif op == "stats":
                self.aggregate.add(handle.index, message.get("stats", {}))
            elif op == "passive_down":
                self.passive_down(message.get("pool", ""), message.get("member", ""), message.get("reason", ""))
            elif op == "error":
                log.error("worker %d refused a revision: %s", handle.index, message.get("error"))

    def _announce(self) -> None:
        """Log once when every worker serves the current revision."""
        if self.spec is None:
            return
        current = self.spec.revision
        live = [w for w in self.workers.values() if not w.stopping]
        if live and all(w.revision == current for w in live) and self._announced != current:
            self._announced = current
            self.announced_event.set()
            log.info("revision %s serving on %d workers", current, len(live))

    def worker_exited(self, handle: WorkerHandle) -> None:
        """A worker's control channel reached EOF: it exited (or is exiting)."""
        assert self.loop is not None
        self.loop.remove_reader(handle.channel.fileno())
        handle.channel.close()
        try:
            code = handle.proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            # Closed its channel but still running: it is of no use to us any more.
            handle.proc.kill()
            code = handle.proc.wait()
        if self.workers.get(handle.index) is handle:
            del self.workers[handle.index]
        self.aggregate.forget_worker(handle.index)
        if not self.stopping:
            log.warning("worker %d (pid %d) exited with %s; restarting it", handle.index, handle.proc.pid, _exit_text(code))
            delay = RESPAWN_BACKOFF if time.monotonic() - handle.started < 1.0 else 0.0
            self.loop.call_later(delay, self._respawn, handle.index)
        elif not self.workers and self.done is not None and not self.done.done():
            self.done.set_result(None)

    def _respawn(self, index: int) -> None:
        if not self.stopping and index not in self.workers:
            self._announced = None  # announce again once the new worker serves
            self.spawn(index)

    # -- reload -----------------------------------------------------------------------
    def handle_sighup(self) -> None:
        if not self.stopping:
            self.reload()

    def reload(self) -> tuple[bool, str]:
        """Re-read the file and apply it whole, or refuse it whole. Returns (ok, message)."""
        old = self.spec
        assert old is not None
        try:
            new = self.load()
            material = self.material_digest(new)
        except S.SpecError as exc:
            log.error("reload refused, revision %s keeps serving:\n%s", old.revision, exc)
            return False, str(exc)
        if new.revision == old.revision and material == self.material:
            log.info("reload: revision %s unchanged", old.revision)
            self._announced = None
            self._announce()
            return True, f"revision {old.revision} unchanged"
        self.needs_restart = None
        try:
            fresh = self.bind_all(new)
        except NeedsRestart as exc:
            self.needs_restart = new.revision
            log.error("reload refused, revision %s keeps serving: %s (revision %s, in %s, "
                      "applies at the next start)", old.revision, exc.strerror, new.revision, self.spec_path)
            return False, str(exc.strerror)
        except OSError as exc:
            log.error("reload refused, revision %s keeps serving: %s", old.revision, exc.strerror)
            return False, str(exc.strerror)
        self.sockets.update(fresh)
        changes = S.diff(old, new)
        if new.revision == old.revision:
            log.info("reload: revision %s, certificate or key files changed", new.revision)
        else:
            log.info("reload: revision %s -> %s (%d changes)\n%s", old.revision, new.revision, len(changes), S.format_diff(changes))
        self.spec = new
        self.material = material
        self._announced = None
        self.book.apply(new)
        self.health.apply(new)
        if new.admin != old.admin:
            self.loop.create_task(self.restart_admin(new))
        for handle in self.workers.values():
            self.send_spec(handle)
        self.broadcast_members()
        # Drop sockets no revision binds any more; workers closed their copies.
        wanted = {str(l.bind) for l in new.listeners}
        for key in list(self.sockets):
            if key not in wanted:
                for sock in self.sockets.pop(key):
                    sock.close()
                for handle in self.workers.values():
                    handle.binds.discard(key)
        return True, f"revision {new.revision}"

    def material_digest(self, spec: S.Spec) -> str:
        """A hash of the certificate, key, CA and CRL files the Spec names.

        Renewing a certificate in place (same path, new content) and reloading must
        reach the workers even though the Spec itself did not change.
        """
        digest = hashlib.sha256()
        for path in sorted(tls_files(spec)):
            full = Path(self.base_dir, path)
            digest.update(path.encode() + b"\0")
            try:
                digest.update(hashlib.sha256(full.read_bytes()).digest())
            except OSError:
                digest.update(b"missing")
        return digest.hexdigest()

    async def wait_serving(self, revision: str, timeout: float) -> bool:
        """Until every worker serves ``revision`` (the node agent answers after that)."""
        deadline = time.monotonic() + timeout
        while self._announced != revision:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.announced_event.clear()
            try:
                await asyncio.wait_for(self.announced_event.wait(), left)
            except asyncio.TimeoutError:
                return False
        return True

    # -- stop -------------------------------------------------------------------------
    def handle_sigterm(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        assert self.loop is not None and self.spec is not None
        deadline = max((l.timeouts.drain for l in self.spec.listeners), default=30.0)
        log.info("stopping: draining for up to %.0fs", deadline)
        for handle in self.workers.values():
            handle.stopping = True
            try:
                handle.channel.sock.settimeout(5.0)
                handle.channel.send({"op": "stop", "deadline": deadline})
            except OSError:
                handle.proc.terminate()
        for socks in self.sockets.values():
            for sock in socks:
                sock.close()
        self.sockets.clear()
        self.loop.call_later(deadline + KILL_GRACE, self._kill_stragglers)
        if not self.workers and self.done is not None and not self.done.done():
            self.done.set_result(None)

    handle_sigint = handle_sigterm

    def handle_sigusr1(self) -> None:
        """Log rotation (logrotate signals the supervisor): every worker reopens its logs."""
        for handle in self.workers.values():
            try:
                handle.proc.send_signal(signal.SIGUSR1)
            except ProcessLookupError:
                pass

    def _kill_stragglers(self) -> None:
        for handle in self.workers.values():
            log.warning("worker %d did not drain in time; killing it", handle.index)
            handle.proc.kill()


class SupervisorController:
    """The runtime API's Controller: reads the snapshot, changes member state live."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.book = supervisor.book

    def snapshot(self) -> dict:
        return self.supervisor.snapshot()

    def set_member_admin(self, pool: str, member: str, state: str) -> None:
        self.book.set_member_admin(pool, member, state)
        log.info("runtime: %s/%s state %s", pool, member, state)

    def set_member_weight(self, pool: str, member: str, weight: int) -> None:
        self.book.set_member_weight(pool, member, weight)
        log.info("runtime: %s/%s weight %s", pool, member, weight)

    def set_health_enabled(self, pool: str, member: str, enabled: bool) -> None:
        self.book.set_health_enabled(pool, member, enabled)
        log.info("runtime: %s/%s health checks %s", pool, member, "enabled" if enabled else "disabled")

    def servers_state(self) -> list[dict]:
        return self.book.servers_state()


def tls_files(spec: S.Spec) -> set[str]:
    """Every file path the Spec's TLS settings name (certificates, keys, CAs, CRLs)."""
    paths: set[str] = set()
    for listener in spec.listeners:
        tls = listener.tls
        if tls is None:
            continue
        for cert in tls.certificates:
            paths.update(p for p in (cert.cert, cert.key) if p)
        auth = tls.client_auth
        if auth is not None:
            paths.update(p for p in (auth.ca, auth.crl) if p)
    for pool in spec.pools:
        tls = getattr(pool, "tls", None)
        if tls is not None:
            paths.update(p for p in (tls.ca, tls.cert, tls.key) if p)
    return paths


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"status {code}"


def serve(spec_path: str | os.PathLike, workers: int | None = None, log_level: str = "INFO",
          agent: tuple[str, int, ssl.SSLContext] | None = None) -> int:
    """Run the engine in the foreground until SIGTERM/SIGINT; returns the exit status."""
    supervisor = Supervisor(spec_path, workers, log_level, agent)
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(supervisor.run())
    return uvloop.run(supervisor.run())
