"""Load generators and probes: wrk runs, idle connections, TLS resumption, openssl speed.

wrk (the Debian package) makes all request load: one thread on the load generator's
CPU, ``bench/lua/report.lua`` printing the totals as JSON. Over https with a new
connection per request, wrk offers the previous session on every reconnection
(it keeps its SSL object across connections), so it resumes whenever the server
allows: the full-handshake scenarios turn resumption off on the server, and
``probe_tls`` checks that the server really refuses it (haproxy's own counters
confirm it per run, see ``Running.tls_sessions``), and which protocol version it
negotiates (TLS 1.3 for all, or the figures compare different handshakes).
"""

from __future__ import annotations

import json
import re
import selectors
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.certs import SERVER_NAME
from bench.servers import unverified_context

__all__ = ["IdleResult", "TlsProbe", "WrkResult", "bench_totals", "hold_idle", "openssl_speed", "probe_tls", "run_wrk",
           "wrk_argv"]

LUA = Path(__file__).resolve().parent / "lua"
IDLE_CLIENT = Path(__file__).resolve().parent / "idle_client.py"


class LoadError(RuntimeError):
    """The load generator failed (not the server: that shows as errors in a result)."""


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    seconds: float
    bytes: int
    errors: dict[str, int]
    latency_us: dict[str, float]

    @property
    def error_total(self) -> int:
        return sum(self.errors.values())


def wrk_argv(url: str, *, cpu: str, seconds: int, connections: int, script: str = "report.lua") -> list[str]:
    """wrk, one thread pinned to ``cpu``, with one of the bench's Lua scripts."""
    return [
        "taskset", "-c", cpu, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s",
        "-s", str(LUA / script), url,
    ]


def bench_totals(wrk_output: str) -> dict | None:
    """The run's totals from the ``BENCH_JSON`` line ``report.lua`` prints; None without one."""
    for line in wrk_output.splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line[len("BENCH_JSON "):])
    return None


def run_wrk(url: str, *, cpu: str, seconds: int, connections: int, script: str = "report.lua") -> WrkResult:
    argv = wrk_argv(url, cpu=cpu, seconds=seconds, connections=connections, script=script)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        raise LoadError(f"wrk did not finish within {seconds + 30}s") from None
    data = bench_totals(done.stdout)
    if data is not None:
        return WrkResult(data["requests"], data["duration_us"] / 1e6, data["bytes"], data["errors"], data["latency_us"])
    raise LoadError(f"wrk exited {done.returncode} without totals: {(done.stderr or done.stdout).strip()[-500:]}")


@dataclass(frozen=True, slots=True)
class TlsProbe:
    version: str  # what the first handshake negotiated, as ssl says it ("TLSv1.3")
    resumed: bool  # whether the second connection resumed the first one's session


def probe_tls(port: int) -> TlsProbe:
    """The protocol version a server negotiates, and whether it resumes a TLS session:
    one request on a first connection (so a TLS 1.3 ticket arrives), then a second
    connection offering that session."""
    ctx = unverified_context()
    request = f"GET / HTTP/1.1\r\nHost: {SERVER_NAME}\r\nConnection: close\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5.0) as raw:
        with ctx.wrap_socket(raw, server_hostname=SERVER_NAME) as tls:
            tls.sendall(request)
            while tls.recv(65536):
                pass
            session = tls.session
            version = tls.version() or "unknown"
    with socket.create_connection(("127.0.0.1", port), timeout=5.0) as raw:
        with ctx.wrap_socket(raw, server_hostname=SERVER_NAME, session=session) as tls:
            tls.sendall(request)
            while tls.recv(65536):
                pass
            return TlsProbe(version, tls.session_reused)


@dataclass(frozen=True, slots=True)
class IdleResult:
    requested: int
    opened: int
    alive: int
    failed: dict[str, int]
    open_seconds: float
    rss_before: int
    rss_after: int

    @property
    def per_connection(self) -> float | None:
        return (self.rss_after - self.rss_before) / self.opened if self.opened else None


def hold_idle(port: int, *, cpu: str, count: int, tls: bool, measure_rss, settle: float = 1.0,
              deadline: float = 120.0) -> IdleResult:
    """Open ``count`` keep-alive connections (each answered once), let the server
    settle, and call ``measure_rss()`` before and while they are held."""
    before = measure_rss()
    argv = ["taskset", "-c", cpu, sys.executable, str(IDLE_CLIENT), "--port", str(port), "--count", str(count),
            "--deadline", str(deadline), "--hold", str(deadline)]
    if tls:
        argv.append("--tls")
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = _read_event(proc, "ready", deadline + 30)
        time.sleep(settle)
        after = measure_rss()
        proc.stdin.write("measured\n")
        proc.stdin.flush()
        done = _read_event(proc, "done", 60)
    finally:
        if proc.stdin and not proc.stdin.closed:
            proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return IdleResult(count, line["open"], done["alive"], line["failed"], line["seconds"], before, after)


def _read_event(proc: subprocess.Popen, event: str, timeout: float) -> dict:
    end = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < end:
            if not sel.select(timeout=max(0.0, end - time.monotonic())):
                break
            line = proc.stdout.readline()
            if not line:
                err = proc.stderr.read() if proc.poll() is not None else ""
                raise LoadError(f"idle client exited before {event!r}: {err.strip()[-500:]}")
            data = json.loads(line)
            if data.get("event") == event:
                return data
    raise LoadError(f"idle client: no {event!r} within {timeout:g}s")


SPEED_RE = {
    "rsa2048": re.compile(r"^rsa\s+2048 bits\s+([\d.]+)s\s+([\d.]+)s\s+([\d.]+)\s+([\d.]+)", re.M),
    "ecdsa-p256": re.compile(r"^\s*256 bits ecdsa \(nistp256\)\s+([\d.]+)s\s+([\d.]+)s\s+([\d.]+)\s+([\d.]+)", re.M),
}


def openssl_speed(cpu: str, seconds: int) -> dict:
    """Signatures per second on one core: the ceiling for full handshakes per
    CPU-second (a full handshake signs once, plus the key exchange and the rest)."""
    argv = ["taskset", "-c", cpu, "openssl", "speed", "-seconds", str(seconds), "rsa2048", "ecdsap256"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=8 * seconds + 60)
    out: dict = {"command": " ".join(argv[3:])}
    for name, pattern in SPEED_RE.items():
        m = pattern.search(done.stdout)
        if m is None:
            raise LoadError(f"openssl speed: no {name} line in its output:\n{done.stdout[-800:]}{done.stderr[-400:]}")
        out[name] = {"sign_per_s": float(m.group(3)), "verify_per_s": float(m.group(4)),
                     "sign_us": round(1e6 / float(m.group(3)), 1)}
    return out
