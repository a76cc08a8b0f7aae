"""User-space instructions per proxied request, lbcore's worker against haproxy: a count, not a time.

``python -m bench.instructions [--mode MODE] [--servers lbcore,haproxy] [--requests 600 3000] [--concurrency N] [--cache]``

Each server runs with the bench's configuration (``bench/configs``: 3 ACLs,
X-Forwarded-For/-Proto, the access log to syslog over UDP, a port this program holds
and never reads; lbcore with one worker, haproxy with one thread) in front of Debian's
nginx, under valgrind's callgrind. A client in this process makes the requests one
at a time over 127.0.0.1, or with ``--concurrency N`` in rounds over N connections (a
request on each, then each response: the server wakes up to N ready connections, as
under load). The modes (``--mode``):

- ``keepalive``: one keep-alive connection;
- ``close``: a new connection per request (``Connection: close``);
- ``https-keepalive``: one TLS keep-alive connection (RSA-2048 certificate, as the
  harness's scenario);
- ``tls-resumed``: a new TLS connection per request, each resuming the session the
  one before it was given (a TLS 1.3 ticket; the servers share their ticket keys
  as in the harness);
- ``tls-full-rsa``, ``tls-full-ecdsa``: a new TLS connection per request, each a full
  handshake (the servers with tickets and session cache off, as in the harness's
  full-handshake scenarios; the client offers no session either), with an RSA-2048 or
  an ECDSA P-256 certificate.

OpenSSL's own work (the record cipher, the resumption's key exchange) is the same
for both servers and is counted for both. Each server is run twice, with the two request counts; the
difference in instructions its process executed (for lbcore the worker, not the
supervisor), divided by the difference in requests,
is its instructions per request: start-up, warm-up and shutdown cancel out.

Why: on this VM two runs of the throughput harness (``python -m bench``) differ by
more than the changes one wants to judge, and there are no hardware counters. A count
repeats to within a fraction of a percent. What it does not see: the kernel (system
calls, the TCP stack, about half of a request's CPU here, and about equal for the two
servers); cache misses and branch mispredictions, unless ``--cache`` has callgrind
simulate them (a model of this machine's caches and a simple predictor: a comparison
between the servers, not a measurement); and, one request at a time, the batching of
load (every server waits in ``epoll_wait`` once or more per request; ``--concurrency``
shows what batching does to each).
Work that runs per unit of time (stats flushes, timers) adds a little per request,
as callgrind slows the longer run down more. So it compares user-space work, not
throughput: the ratios per CPU-second come only from ``python -m bench``.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.certs import SERVER_NAME, make_cert, make_ticket_keys
from bench.configs import Frontend, backend_nginx_conf, haproxy_cfg, lbcore_spec
from bench.machine import stale_build
from bench.servers import get, nginx_argv, unverified_context

READY_TIMEOUT = 300.0  # seconds: lbcore imports its modules under callgrind first
STOP_TIMEOUT = 120.0
CONTENT_LENGTH = re.compile(rb"(?i)\r\ncontent-length: *(\d+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port: int, close: bool) -> bytes:
    return (b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % port) + (b"Connection: close\r\n" if close else b"") + b"\r\n"


def read_response(sock: socket.socket) -> None:
    """One whole response with a Content-Length body (nginx's small answer)."""
    buf = b""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            length = CONTENT_LENGTH.search(buf[: end + 2])
            if length is None:
                raise SystemExit(f"no Content-Length in {buf[:end]!r}")
            if len(buf) >= end + 4 + int(length.group(1)):
                return
        data = sock.recv(65536)
        if not data:
            raise SystemExit(f"connection closed before a whole response: {buf!r}")
        buf += data


MODES = ("keepalive", "close", "https-keepalive", "tls-resumed", "tls-full-rsa", "tls-full-ecdsa")
TLS_MODES = ("https-keepalive", "tls-resumed", "tls-full-rsa", "tls-full-ecdsa")
FULL_HANDSHAKES = {"tls-full-rsa": "rsa2048", "tls-full-ecdsa": "ecdsa-p256"}  # mode -> certificate


class Client:
    """Makes the requests of one mode on ``concurrency`` connections (the TLS session
    carried over from one connection to the next of the same slot in ``tls-resumed``).

    With one, a request at a time. With more, in rounds: a request sent on each
    connection (new ones connected first, in ``close`` and ``tls-resumed``), then every
    response read. The server then finds several connections ready when it wakes up,
    as under load, instead of one."""

    def __init__(self, port: int, mode: str, concurrency: int = 1) -> None:
        self.port = port
        self.close = mode in ("close", "tls-resumed", *FULL_HANDSHAKES)
        self.resume = mode == "tls-resumed"
        self.context = unverified_context() if mode in TLS_MODES else None
        self.concurrency = concurrency
        self.sessions: list = [None] * concurrency
        self.resumed = 0

    def connect(self, slot: int) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=60)
        if self.context is None:
            return sock
        tls = self.context.wrap_socket(sock, server_hostname=SERVER_NAME, session=self.sessions[slot])
        self.resumed += tls.session_reused
        return tls

    def run(self, count: int) -> None:
        """``count`` requests (a multiple of the concurrency)."""
        if count % self.concurrency:
            raise SystemExit(f"{count} requests are not a multiple of the concurrency ({self.concurrency})")
        data = request(self.port, self.close)
        socks: list = [None] * self.concurrency
        for _ in range(count // self.concurrency):
            for slot in range(self.concurrency):
                if socks[slot] is None:
                    socks[slot] = self.connect(slot)
                socks[slot].sendall(data)
            for slot, sock in enumerate(socks):
                read_response(sock)  # a TLS 1.3 ticket arrives before the response: it is read by now
                if self.close:
                    if self.resume:
                        self.sessions[slot] = sock.session
                    sock.close()
                    socks[slot] = None
        for sock in socks:
            if sock is not None:
                sock.close()


def wait_ready(proc: subprocess.Popen, port: int, tls: bool = False) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited ({proc.returncode}) before it answered")
        try:
            if get(port, tls=tls, timeout=5.0) == 200:
                return
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.5)
    raise SystemExit(f"no answer on port {port} within {READY_TIMEOUT:.0f} s")


# The process whose instructions count, by its command line (callgrind's ``cmd:``):
# lbcore's worker, not its supervisor (which starts up with more than the worker).
MEASURED = {"lbcore": "lbcore.proxy.worker", "haproxy": "haproxy"}


def callgrind_counts(path: Path) -> tuple[str, dict[str, int]]:
    """(``cmd:``, every event's total by name: ``Ir``, and with ``--cache`` the cache
    and branch simulation's ``D1mr``, ``DLmw``, ``Bcm`` ...) of a callgrind output file."""
    command, names, totals = "", ["Ir"], None
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("cmd:"):
            command = line[4:].strip()
        elif line.startswith("events:"):
            names = line[7:].split()
        elif line.startswith(("summary:", "totals:")):
            totals = [int(n) for n in line.split()[1:]]
    if totals is None:
        raise SystemExit(f"no instruction total in {path}")
    return command, dict(zip(names, totals))


def callgrind_total(path: Path) -> tuple[str, int]:
    """(``cmd:``, the ``summary:``/``totals:`` instruction count) of a callgrind output file."""
    command, counts = callgrind_counts(path)
    return command, counts["Ir"]


# ``--cache``: what the simulated caches and branch predictor add, per request, from
# callgrind's events (a sum of several where it splits them).
CACHE_FIGURES = {
    "L1 data misses": ("D1mr", "D1mw"),
    "last-level data misses": ("DLmr", "DLmw"),
    "L1 instruction misses": ("I1mr",),
    "mispredicted branches": ("Bcm", "Bim"),
}


def server_argv(server: str, workdir: Path, fe: Frontend) -> list[str]:
    if server == "lbcore":
        spec = workdir / "lbcore.yaml"
        spec.write_text(yaml.safe_dump(lbcore_spec(fe), sort_keys=False))
        return [sys.executable, "-m", "lbcore.cli", "serve", str(spec), "--workers", "1", "--log-level", "WARNING"]
    if server == "haproxy":
        cfg = workdir / "haproxy.cfg"
        cfg.write_text(haproxy_cfg(fe, workdir / "haproxy.sock"))
        return [shutil.which("haproxy") or "haproxy", "-db", "-f", str(cfg)]
    raise SystemExit(f"unknown server {server!r} (lbcore, haproxy)")


def run_once(server: str, workdir: Path, fe: Frontend, count: int, mode: str, warmup: int, concurrency: int = 1,
             cache: bool = False) -> dict[str, int]:
    """The server under callgrind for ``warmup`` then ``count`` requests: the event
    counts of its measured process (``MEASURED``), ``Ir`` and with ``cache`` the
    cache and branch simulation's."""
    prefix = workdir / f"cg.{server}.{count}"
    for old in workdir.glob(f"{prefix.name}.*"):
        old.unlink()
    simulate = ["--cache-sim=yes", "--branch-sim=yes"] if cache else []
    argv = ["valgrind", "--tool=callgrind", *simulate, "--trace-children=yes", f"--callgrind-out-file={prefix}.%p",
            *server_argv(server, workdir, fe)]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    with open(workdir / f"{server}.{count}.log", "w") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            wait_ready(proc, fe.port, tls=fe.tls is not None)
            client = Client(fe.port, mode, concurrency)
            client.run(warmup)
            client.run(count)
            if mode == "tls-resumed" and client.resumed < warmup + count - concurrency:
                raise SystemExit(f"{server}: {client.resumed} of {warmup + count - concurrency} connections resumed")
            if mode in FULL_HANDSHAKES and client.resumed:
                raise SystemExit(f"{server}: {client.resumed} connections resumed, none should")
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    measured = [counts for command, counts in map(callgrind_counts, workdir.glob(f"{prefix.name}.*"))
                if MEASURED[server] in command]
    if len(measured) != 1:
        raise SystemExit(f"{server}: {len(measured)} callgrind outputs of {MEASURED[server]!r}, not one")
    return measured[0]


def per_request_figures(few: dict[str, int], many: dict[str, int], requests: int) -> dict[str, float]:
    """``CACHE_FIGURES`` per request: the difference between two runs' counts over the
    difference in their requests (start-up and shutdown cancel out, as for ``Ir``)."""
    return {figure: sum(many[e] - few[e] for e in events) / requests for figure, events in CACHE_FIGURES.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=MODES, default="keepalive")
    parser.add_argument("--servers", default="lbcore,haproxy", help="comma-separated: lbcore, haproxy")
    parser.add_argument("--requests", type=int, nargs=2, default=(600, 3000), metavar=("FEW", "MANY"))
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=1,
                        help="connections in flight (requests go in rounds, one on each): batching as under load")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (callgrind files, logs)")
    parser.add_argument("--cache", action="store_true",
                        help="also simulate the caches and branch predictor: misses per request (slower)")
    args = parser.parse_args(argv)
    stale = stale_build()
    if stale:
        print(f"refusing to count a stale build: {stale}", file=sys.stderr)
        return 2
    few, many = args.requests
    if not 0 < few < many:
        parser.error("--requests: FEW must be positive and smaller than MANY")
    if args.concurrency < 1 or any(n % args.concurrency for n in (few, many, args.warmup)):
        parser.error("--concurrency: at least 1, and a divisor of FEW, MANY and --warmup")
    workdir = Path(tempfile.mkdtemp(prefix="lbcore-instructions-"))
    tls = args.mode in TLS_MODES
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # the access log's syslog port, never read
    sink.bind(("127.0.0.1", 0))
    fe = Frontend(port=free_port(), backend_port=free_port(), acls=3, access_log_port=sink.getsockname()[1],
                  admin_port=free_port(),
                  tls=make_cert(workdir / "certs", FULL_HANDSHAKES.get(args.mode, "rsa2048")) if tls else None,
                  resume=args.mode not in FULL_HANDSHAKES,
                  ticket_keys=make_ticket_keys(workdir / "certs") if args.mode == "tls-resumed" else None)
    (workdir / "nginx.conf").write_text(backend_nginx_conf(fe.backend_port, workdir))
    backend = subprocess.Popen(nginx_argv(workdir, workdir / "nginx.conf"), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    per_request: dict[str, float] = {}
    try:
        wait_ready(backend, fe.backend_port)
        for server in [s.strip() for s in args.servers.split(",") if s.strip()]:
            counts = [run_once(server, workdir, fe, n, args.mode, args.warmup, args.concurrency, args.cache)
                      for n in (few, many)]
            per_request[server] = (counts[1]["Ir"] - counts[0]["Ir"]) / (many - few)
            print(f"{server:8s} {args.mode}: {per_request[server]:,.0f} instructions per request "
                  f"({counts[0]['Ir']:,} for {few}, {counts[1]['Ir']:,} for {many}; {args.concurrency} in flight)",
                  flush=True)
            if args.cache:
                for figure, per in per_request_figures(counts[0], counts[1], many - few).items():
                    print(f"{server:8s} {args.mode}: {per:,.1f} {figure} per request", flush=True)
    finally:
        backend.terminate()
        backend.wait()
        sink.close()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if "lbcore" in per_request and "haproxy" in per_request:
        print(f"lbcore / haproxy: {per_request['lbcore'] / per_request['haproxy']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
