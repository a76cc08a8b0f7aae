"""Running the scenarios: start servers, load them, measure, collect.

Theory of operation
- The harness pins itself, wrk, the idle client and the nginx backend to the load
  CPU, and every server under test to the server CPU, so the server's CPU time is
  its own and the noise of the rest stays on the other core.
- One nginx backend serves the whole run. Each scenario starts its servers (each on
  a port never used before in the run, so no TIME_WAIT of an earlier run can clash),
  probes TLS resumption where it matters, warms each server up, then measures
  ``reps`` rounds; each round runs every server once, in an order rotated per round,
  so slow drifts of the machine spread over all servers alike.
- A measurement samples the server tree's CPU ticks, runs wrk, samples again:
  requests (or handshakes, or MiB) per server CPU-second. Before a run that opens a
  connection per request, the run waits (bounded) for TIME_WAIT sockets to drain
  below a limit.
- A server that cannot run a scenario is recorded as not available, with why; one
  that fails to start or dies is recorded as failed, with its log's tail; the run
  goes on either way.
- Access logs (when on) go to a syslog UDP port that the harness holds and never
  reads: lbcore, haproxy and nginx pay for formatting and sending each line, and
  the kernel drops what overflows the socket's buffer.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bench import configs, load, machine, servers
from bench.certs import KEY_TYPES, make_cert, make_ticket_keys
from bench.configs import Frontend
from bench.procs import StartFailed, cpu_sample, rss_bytes, time_wait_count
from bench.report import busy_shares, shares_text
from bench.scenarios import Scenario

__all__ = ["Settings", "run"]

# Server ports: below the ephemeral range (32768-60999), so they never meet wrk's source
# ports; each run starts at a pid-chosen offset so that two runs at once (CI and a
# developer) rarely probe the same ports. A run takes well under PORT_SPAN ports.
PORT_BASE = 21000
PORT_SPAN = 200
MIB = 1 << 20
STATS_FLUSH = 1.2  # seconds: lbcore.proxy.stats.FLUSH_INTERVAL and a margin
LOGGING = ("lbcore", "haproxy", "nginx")  # the servers that write access logs (not naive, not stunnel)


@dataclass
class Settings:
    scenarios: list[Scenario]
    quick: bool = False
    reps: int = 3
    seconds: int = 5
    warmup: int = 1
    workers: int = 1
    idle_count: int | None = None  # None: each scenario's own
    load_cpu: str = "0"
    server_cpu: str = "1"
    speed_seconds: int = 2
    # Before a run that opens a connection per request, wait (at most time_wait_wait
    # seconds) for TIME_WAIT sockets to drain below time_wait_limit: by then the kernel
    # is near tcp_max_tw_buckets and starts dropping them. Below it they do no harm
    # here: each server listens on a port of its own and tcp_tw_reuse covers loopback.
    time_wait_limit: int = field(default_factory=lambda: _tw_limit())
    time_wait_wait: float = 30.0
    servers: set[str] | None = None  # only these labels (None: all)
    access_log: bool = True
    access_log_tcp: bool = False  # lbcore and haproxy log over TCP (nginx keeps UDP): --access-log-tcp
    keep_workdir: bool = False


def _tw_limit() -> int:
    try:
        buckets = int(Path("/proc/sys/net/ipv4/tcp_max_tw_buckets").read_text())
    except (OSError, ValueError):
        buckets = 131_072
    return int(buckets * 0.6)


class Progress:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        elapsed = int(time.monotonic() - self.started)
        print(f"[{elapsed // 60:3d}:{elapsed % 60:02d}] {message}", flush=True)


class Ports:
    def __init__(self, base: int | None = None) -> None:
        self.next_port = base if base is not None else PORT_BASE + (os.getpid() % 55) * PORT_SPAN

    def take(self) -> int:
        while True:
            port = self.next_port
            self.next_port += 1
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def run(settings: Settings, out_dir: Path, command: list[str]) -> dict:
    progress = Progress()
    try:
        os.sched_setaffinity(0, {int(settings.load_cpu)})
    except OSError as exc:
        progress(f"cannot pin the harness to CPU {settings.load_cpu}: {exc}")
    workdir = Path(tempfile.mkdtemp(prefix="lbcore-bench-"))
    workdir.chmod(0o755)  # nginx workers run as www-data and read the backend's files here
    pinning = {
        "load generator (wrk, idle client), nginx backend, harness": settings.load_cpu,
        "server under test": settings.server_cpu,
    }
    results: dict = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(command),
        "settings": {
            "quick": settings.quick,
            "reps": settings.reps,
            "seconds_per_run": settings.seconds,
            "warmup_seconds": settings.warmup,
            "workers": settings.workers,
            "access_log": settings.access_log,
            "access_log_transport": "tcp" if settings.access_log_tcp else "udp",
            "time_wait_limit": settings.time_wait_limit,
        },
        "machine": machine.describe(pinning),
        "scenarios": [],
        "problems": [],
    }
    progress(f"work directory {workdir}; results to {out_dir}")
    ports = Ports()
    sink = None
    backend = None
    try:
        certs = {kind: make_cert(workdir / "certs", kind) for kind in KEY_TYPES}
        ticket_keys = make_ticket_keys(workdir / "certs")
        backend_port = ports.take()
        backend = servers.start_backend(workdir / "backend", backend_port, settings.load_cpu)
        progress(f"nginx backend on 127.0.0.1:{backend_port} (CPU {settings.load_cpu})")
        log_port = None
        if settings.access_log:
            sink, log_port, why = _access_log_sink(ports, workdir, settings.access_log_tcp)
            if sink is None:
                results["settings"]["access_log"] = False
                results["problems"].append(f"access logs off for every server: {why}")
                progress(f"access logs off: {why}")
            elif settings.access_log_tcp:
                progress(f"access logs on: syslog over tcp to 127.0.0.1:{log_port} (read and discarded; "
                         "nginx: udp, held, not read)")
            else:
                progress(f"access logs on: syslog to udp 127.0.0.1:{log_port} (held, not read)")
        context = _Context(settings, progress, ports, certs, ticket_keys, backend_port, log_port, workdir)
        for scenario in settings.scenarios:
            progress(f"== {scenario.name}: {scenario.title}")
            try:
                record = _run_scenario(scenario, context)
            except Exception as exc:  # one broken scenario must not lose the others
                record = {"name": scenario.name, "title": scenario.title, "kind": scenario.kind,
                          "error": f"{type(exc).__name__}: {exc}", "servers": {}}
                results["problems"].append(f"{scenario.name}: harness error: {exc}\n{traceback.format_exc()}")
                progress(f"{scenario.name}: harness error: {exc}")
            results["scenarios"].append(record)
        if backend is not None and not backend.alive():
            results["problems"].append(f"the nginx backend died:\n{backend.log_tail()}")
    finally:
        if backend is not None:
            backend.stop()
        if sink is not None:
            sink.close()
            if isinstance(sink, LogReceiver):
                results["settings"]["access_log_tcp_bytes"] = sink.received
        if settings.keep_workdir:
            progress(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    results["elapsed_seconds"] = round(time.monotonic() - progress.started, 1)
    return results


TCP_LOG_PORT_TRIES = 50  # UDP ports drawn until the same TCP port is free too


class LogReceiver:
    """syslog over TCP for the servers that log so (a thread reads and discards what
    arrives, as a syslog daemon on another core would take it), beside the UDP socket
    held for nginx on the same port number."""

    STOP_DRAIN = 2.0  # seconds close() waits for the connections to end

    def __init__(self, udp: socket.socket) -> None:
        self.udp = udp
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT on it
            self.listener.bind(udp.getsockname())  # TCP and UDP ports are separate spaces
            self.listener.listen(64)
        except OSError:
            self.listener.close()
            raise
        self.received = 0
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="bench log receiver", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conns: list[socket.socket] = []
        buffer = bytearray(1 << 20)
        stopping = 0.0  # when close() asked, on the monotonic clock
        while True:
            # Once stopped, it reads on until every connection has ended (its server
            # closed it) and nothing more comes, for at most STOP_DRAIN seconds: bytes
            # a server sent just before may still be on their way through the kernel.
            wait = None if not stopping else 0.05  # a quiet spell, not an instant
            readable, _, _ = select.select([self.listener, self._stop_r, *conns], [], [], wait)
            if self._stop_r in readable:
                stopping = stopping or time.monotonic()
                readable.remove(self._stop_r)
            if stopping and (not readable and not conns or time.monotonic() - stopping > self.STOP_DRAIN):
                break
            for sock in readable:
                if sock is self.listener:
                    conn, _ = self.listener.accept()
                    conns.append(conn)
                    continue
                try:
                    count = sock.recv_into(buffer)
                except OSError:  # reset by a server that was stopped hard
                    count = 0
                if count:
                    self.received += count
                else:
                    conns.remove(sock)
                    sock.close()
        for conn in conns:
            conn.close()

    def close(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(self.STOP_DRAIN + 10)
        for fd in (self._stop_r, self._stop_w):
            os.close(fd)
        self.listener.close()
        self.udp.close()


def _access_log_sink(ports: Ports, workdir: Path, tcp: bool = False) -> tuple[socket.socket | LogReceiver | None, int | None, str]:
    """A UDP socket to log to (and with ``tcp`` a TCP receiver on the same port number),
    if lbcore accepts a Spec that logs there."""
    sink: socket.socket | LogReceiver
    for _ in range(TCP_LOG_PORT_TRIES):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        if not tcp:
            sink = sock
            break
        try:
            sink = LogReceiver(sock)
            break
        except OSError as exc:  # that TCP port is taken (by a client's ephemeral port): another pair
            sock.close()
            problem = f"no TCP port beside a UDP one (the last, {port}: {exc})"
    else:
        return None, None, problem
    probe = configs.lbcore_spec(Frontend(port=ports.take(), backend_port=ports.take(), access_log_port=port,
                                         access_log_tcp=tcp))
    path = workdir / "access-log-check.yaml"
    path.write_text(yaml.safe_dump(probe, sort_keys=False))
    check = subprocess.run([sys.executable, "-m", "lbcore.cli", "check", str(path)],
                           capture_output=True, text=True, timeout=60, cwd=servers.ROOT)
    if check.returncode != 0:
        sink.close()
        return None, None, f"lbcore check refuses access_log: {(check.stderr or check.stdout).strip()}"
    return sink, port, ""


@dataclass
class _Context:
    settings: Settings
    progress: Progress
    ports: Ports
    certs: dict
    ticket_keys: Path
    backend_port: int
    log_port: int | None
    workdir: Path


def _labels(scenario: Scenario, settings: Settings) -> list[str]:
    labels = list(scenario.servers)
    if settings.servers is not None:
        labels = [l for l in labels if l in settings.servers or l.split("-")[0] in settings.servers]
    return labels


def _run_scenario(scenario: Scenario, ctx: _Context) -> dict:
    settings = ctx.settings
    record: dict = {"name": scenario.name, "title": scenario.title, "kind": scenario.kind, "unit": scenario.unit,
                    "tls": scenario.tls, "servers": {}}
    if scenario.kind == "speed":
        speed = load.openssl_speed(settings.server_cpu, settings.speed_seconds)
        record["speed"] = speed
        ctx.progress(f"openssl speed on CPU {settings.server_cpu}: RSA-2048 {speed['rsa2048']['sign_per_s']:,.0f} "
                     f"signs/s, ECDSA P-256 {speed['ecdsa-p256']['sign_per_s']:,.0f} signs/s")
        return record
    record["connections"] = scenario.connections if scenario.kind == "wrk" else None
    running: dict[str, servers.Running] = {}
    try:
        for label in _labels(scenario, settings):
            spec = servers.parse_label(label, 1 if scenario.fixed_workers else settings.workers)
            fe = Frontend(
                port=ctx.ports.take(),
                backend_port=ctx.backend_port,
                workers=spec.workers,
                acls=scenario.acls,
                tls=ctx.certs[scenario.tls] if scenario.tls else None,
                resume=scenario.resume,
                # lbcore's tickets cross workers (and nodes) through the key file; haproxy's
                # threads share one process's keys.
                ticket_keys=ctx.ticket_keys if scenario.tls and scenario.resume else None,
                access_log_port=ctx.log_port if scenario.access_log and spec.kind in LOGGING else None,
                access_log_tcp=settings.access_log_tcp and spec.kind in ("lbcore", "haproxy"),
                admin_port=ctx.ports.take() if spec.kind == "lbcore" else None,
            )
            try:
                running[label] = servers.start(spec, fe, ctx.workdir / scenario.name / label, settings.server_cpu)
                record["servers"][label] = {"status": "ok", "workers": spec.workers, "port": fe.port,
                                            "access_log": fe.access_log_port is not None, "runs": []}
            except servers.Unavailable as exc:
                record["servers"][label] = {"status": "not available", "reason": str(exc)}
                ctx.progress(f"{scenario.name}: {label}: not available: {exc}")
            except StartFailed as exc:
                record["servers"][label] = {"status": "failed", "reason": str(exc)}
                ctx.progress(f"{scenario.name}: {label}: failed to start: {exc}")
        if scenario.kind == "wrk":
            _measure_wrk(scenario, ctx, running, record)
        else:
            _measure_idle(scenario, ctx, running, record)
    finally:
        for label, server in running.items():
            if not server.alive() and record["servers"][label]["status"] == "ok":
                record["servers"][label]["status"] = "failed"
                record["servers"][label]["reason"] = f"exited with status {server.proc.returncode()}:\n{server.proc.log_tail()}"
            server.stop()
    _summarise(scenario, record)
    return record


def _url(scenario: Scenario, server: servers.Running) -> str:
    return f"{server.fe.scheme}://127.0.0.1:{server.fe.port}{scenario.path}"


def _measure_wrk(scenario: Scenario, ctx: _Context, running: dict[str, servers.Running], record: dict) -> None:
    settings = ctx.settings
    if scenario.tls:
        for label, server in running.items():
            try:
                probe = load.probe_tls(server.fe.port)
            except (OSError, ValueError) as exc:
                record["servers"][label]["resumption_probe"] = f"failed: {exc}"
                continue
            entry = record["servers"][label]
            entry["tls_version"] = probe.version
            entry["resumes_sessions"] = resumed = probe.resumed
            if probe.version != "TLSv1.3":
                entry["comparable"] = False
                entry["note"] = f"negotiates {probe.version}, not TLS 1.3 as the others: its handshakes differ"
                ctx.progress(f"{scenario.name}: {label}: {entry['note']}")
            elif resumed != scenario.resume:
                entry["comparable"] = False
                entry["note"] = ("resumes sessions although resumption is off in its configuration: its figure "
                                 "counts resumed handshakes" if resumed else
                                 "does not resume sessions: its figure counts full handshakes")
                ctx.progress(f"{scenario.name}: {label}: {entry['note']}")
    if settings.warmup:
        for label, server in running.items():
            try:
                load.run_wrk(_url(scenario, server), cpu=settings.load_cpu, seconds=settings.warmup,
                             connections=scenario.connections, script=scenario.script)
            except load.LoadError as exc:
                ctx.progress(f"{scenario.name}: {label}: warm-up: {exc}")
    labels = list(running)
    for rep in range(settings.reps):
        order = labels[rep % len(labels):] + labels[:rep % len(labels)] if labels else []
        for label in order:
            server = running[label]
            entry = record["servers"][label]
            if entry["status"] != "ok":
                continue
            if not server.alive():
                entry["status"] = "failed"
                entry["reason"] = f"exited with status {server.proc.returncode()}:\n{server.proc.log_tail()}"
                ctx.progress(f"{scenario.name}: {label}: died: {entry['reason']}")
                continue
            tw_before = _drain_time_wait(ctx) if scenario.new_connection_per_request else time_wait_count()
            try:
                measured = _measure_one(scenario, ctx, server, label)
            except load.LoadError as exc:
                entry.setdefault("load_errors", []).append(str(exc))
                ctx.progress(f"{scenario.name}: {label}: rep {rep + 1}: load generator: {exc}")
                continue
            measured["time_wait_before"] = tw_before
            entry["runs"].append(measured)
            errors = sum(measured["errors"].values())
            ctx.progress(
                f"{scenario.name:16s} {label:11s} rep {rep + 1}/{settings.reps}  "
                f"{_fmt(measured['per_cpu_s']):>9s} {scenario.unit}/CPU-s  "
                f"({_fmt(measured['rate'])}/s, server CPU {measured['cpu_util'] * 100:.0f}%"
                f"{_split(measured)}{', errors ' + str(measured['errors']) if errors else ''})"
            )


def _workers_busy(run: dict) -> int:
    """Processes of the server tree that took at least 10% of its CPU in a run."""
    return len(busy_shares(run, 0.10))


def _split(measured: dict) -> str:
    """How the work fell on a tree of several busy processes (workers): each one's CPU
    share, and its context switches per 1,000 requests (waits for events, preemptions)."""
    shares = busy_shares(measured, 0.01)
    if len(shares) < 2:
        return ""
    waits, preempted = measured["switches_per_1k"]
    return f", CPU split {shares_text(shares)}%, per 1k: {waits} waits, {preempted} preempted"


def _measure_one(scenario: Scenario, ctx: _Context, server: servers.Running, label: str) -> dict:
    settings = ctx.settings
    pids = server.pids()
    tls_before = server.tls_sessions()
    before = cpu_sample(pids)
    result = load.run_wrk(_url(scenario, server), cpu=settings.load_cpu, seconds=settings.seconds,
                          connections=scenario.connections, script=scenario.script)
    after = cpu_sample(server.pids())
    if tls_before is not None and server.spec.kind == "lbcore":
        time.sleep(STATS_FLUSH)  # lbcore's workers send their counters every second
    tls_after = server.tls_sessions()
    use = before.until(after)
    cpu_s, lost = use.total, use.lost
    amount = result.bytes / MIB if scenario.unit == "MiB" else result.requests
    measured = {
        "requests": result.requests,
        "seconds": round(result.seconds, 3),
        "bytes": result.bytes,
        "cpu_s": round(cpu_s, 3),
        "cpu_util": round(cpu_s / result.seconds, 3) if result.seconds else None,
        "cpu_system_share": round(use.system / cpu_s, 3) if cpu_s > 0 else None,
        "per_cpu_s": round(amount / cpu_s, 1) if cpu_s > 0 else 0.0,
        "rate": round(amount / result.seconds, 1) if result.seconds else 0.0,
        "errors": {k: v for k, v in result.errors.items() if v},
        "latency_us": result.latency_us,
        "processes": len(after.ticks),
        # How the work fell: CPU seconds of each of the tree's processes (a worker that
        # took no connections shows as ~0), and context switches per 1,000 requests
        # (voluntary: waits for events; involuntary: preempted, as workers sharing a CPU are).
        "cpu_by_process": [round(seconds, 2) for seconds in use.by_process],
        "switches_per_1k": [round(count * 1000 / result.requests, 1) if result.requests else None
                            for count in use.switches],
    }
    if lost:
        measured["exited_during_run"] = lost
        ctx.progress(f"{scenario.name}: {label}: processes {lost} exited during the run")
    if tls_before is not None and tls_after is not None:
        sessions = tls_after[0] - tls_before[0]
        resumed = tls_after[1] - tls_before[1]
        measured["tls_sessions"] = {"total": sessions, "resumed": resumed}
    return measured


def _drain_time_wait(ctx: _Context) -> int:
    settings = ctx.settings
    count = time_wait_count()
    if count <= settings.time_wait_limit:
        return count
    ctx.progress(f"waiting for {count:,} TIME_WAIT sockets to drain below {settings.time_wait_limit:,} "
                 f"(at most {settings.time_wait_wait:.0f}s)")
    deadline = time.monotonic() + settings.time_wait_wait
    while count > settings.time_wait_limit and time.monotonic() < deadline:
        time.sleep(1.0)
        count = time_wait_count()
    return count


def _measure_idle(scenario: Scenario, ctx: _Context, running: dict[str, servers.Running], record: dict) -> None:
    settings = ctx.settings
    count = settings.idle_count or scenario.idle_count
    for label, server in running.items():
        entry = record["servers"][label]
        _drain_time_wait(ctx)
        # Settle the server's memory first: one request, then a moment.
        try:
            servers.get(server.fe.port, server.fe.tls is not None)
        except Exception as exc:  # noqa: BLE001 - recorded, the measurement below says more
            entry.setdefault("notes", []).append(f"first request failed: {exc}")
        time.sleep(0.5)
        try:
            result = load.hold_idle(server.fe.port, cpu=settings.load_cpu, count=count, tls=server.fe.tls is not None,
                                    measure_rss=lambda: rss_bytes(server.pids()),
                                    deadline=60.0 if settings.quick else 120.0)
        except load.LoadError as exc:
            entry["status"] = "failed"
            entry["reason"] = str(exc)
            ctx.progress(f"{scenario.name}: {label}: {exc}")
            continue
        per = result.per_connection
        entry["idle"] = {
            "requested": result.requested,
            "opened": result.opened,
            "alive_after": result.alive,
            "failed": result.failed,
            "open_seconds": result.open_seconds,
            "rss_before": result.rss_before,
            "rss_after": result.rss_after,
            "bytes_per_connection": round(per) if per is not None else None,
        }
        entry["runs"] = []
        ctx.progress(
            f"{scenario.name:16s} {label:11s} {result.opened:,}/{result.requested:,} open "
            f"({result.alive:,} still open after), RSS {result.rss_before / MIB:.1f} -> {result.rss_after / MIB:.1f} MiB: "
            + (f"{per / 1024:.1f} KiB per connection" if per is not None else "no connection")
            + (f", failed {result.failed}" if result.failed else "")
        )


def _summarise(scenario: Scenario, record: dict) -> None:
    """Median, min and max per server; ratios to haproxy (same worker count when the
    scenario has one) from the medians."""
    for entry in record["servers"].values():
        runs = entry.get("runs") or []
        values = [run["per_cpu_s"] for run in runs]
        if values:
            entry["median"] = round(statistics.median(values), 1)
            entry["min"] = min(values)
            entry["max"] = max(values)
            entry["rate_median"] = round(statistics.median(run["rate"] for run in runs), 1)
            entry["cpu_util_median"] = round(statistics.median(run["cpu_util"] or 0 for run in runs), 3)
            entry["cpu_system_share_median"] = round(
                statistics.median(run["cpu_system_share"] or 0 for run in runs), 3)
            totals: dict[str, int] = {}
            for run in runs:
                for key, count in run["errors"].items():
                    totals[key] = totals.get(key, 0) + count
            entry["errors_total"] = totals
            entry["requests_total"] = sum(run["requests"] for run in runs)
        sessions = [run["tls_sessions"] for run in runs if run.get("tls_sessions")]
        if sessions and scenario.unit == "handshakes":
            total = sum(x["total"] for x in sessions)
            share = sum(x["resumed"] for x in sessions) / total if total else 0.0
            entry["resumed_share"] = round(share, 3)
            # Each wrk connection starts with one full handshake: resumed runs stay below 100%.
            if scenario.resume and share < 0.8 or not scenario.resume and share > 0.01:
                entry["comparable"] = False
                entry["note"] = (f"the server counted {share:.0%} of its handshakes as resumed "
                                 f"(expected {'all' if scenario.resume else 'none'})")
    if scenario.kind == "idle":
        value = lambda e: (e.get("idle") or {}).get("bytes_per_connection")  # noqa: E731
    else:
        value = lambda e: e.get("median")  # noqa: E731
    for label, entry in record["servers"].items():
        reference = _reference(label, record["servers"])
        if reference is None or value(entry) is None or not value(record["servers"][reference]):
            continue
        entry["reference"] = reference
        entry["ratio"] = round(value(entry) / value(record["servers"][reference]), 3)
    if scenario.name == "scaling":
        one, two = record["servers"].get("lbcore", {}), record["servers"].get("lbcore-2w", {})
        if one.get("median") and two.get("median"):
            record["scaling_2w_over_1w"] = {"lbcore": round(two["median"] / one["median"], 3)}
            h1, h2 = record["servers"].get("haproxy", {}), record["servers"].get("haproxy-2t", {})
            if h1.get("median") and h2.get("median"):
                record["scaling_2w_over_1w"]["haproxy"] = round(h2["median"] / h1["median"], 3)
            # A run where one worker took all of wrk's connections measured one worker:
            # the ratio of the runs that did split them (each busy worker >= 10% of the CPU).
            split = [run["per_cpu_s"] for run in two.get("runs", []) if _workers_busy(run) >= 2]
            record["scaling_2w_split"] = {
                "runs": len(split),
                "of": len(two.get("runs", [])),
                "ratio": round(statistics.median(split) / one["median"], 3) if split else None,
            }


def _reference(label: str, entries: dict) -> str | None:
    """haproxy with the same worker/thread suffix if the scenario has it, else haproxy."""
    suffix = label.partition("-")[2]
    same = f"haproxy-{suffix[:-1]}t" if suffix else "haproxy"
    for candidate in (same, "haproxy"):
        entry = entries.get(candidate)
        if entry is not None and entry.get("status") == "ok" and candidate != label:
            return candidate
    return None
