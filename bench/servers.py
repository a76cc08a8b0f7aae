"""Starting and stopping the servers under test, and the nginx backend.

A scenario names servers by label: ``lbcore``, ``haproxy``, ``naive``, ``nginx``,
``stunnel``, and with a worker count: ``lbcore-2w`` (two worker processes),
``haproxy-2t`` (two threads). ``start`` writes the server's configuration (see
``bench.configs``) in its own directory, starts it pinned to the server CPU and
returns once it answers a request. A server that cannot serve what the scenario
needs (lbcore before its TLS listener exists) raises ``Unavailable``, which the
run records instead of a figure.
"""

from __future__ import annotations

import csv
import http.client
import io
import json
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from bench import configs
from bench.certs import SERVER_NAME
from bench.configs import Frontend
from bench.procs import Managed, StartFailed, wait_for_port

__all__ = ["KINDS", "Running", "ServerSpec", "Unavailable", "parse_label", "start", "start_backend", "unverified_context"]

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("lbcore", "haproxy", "naive", "nginx", "stunnel")
READY_TIMEOUT = 20.0  # seconds for a server to answer its first request


class Unavailable(Exception):
    """This server cannot run this scenario; the message says why."""


@dataclass(frozen=True, slots=True)
class ServerSpec:
    label: str
    kind: str
    workers: int = 1


def parse_label(label: str, default_workers: int = 1) -> ServerSpec:
    """``lbcore`` -> lbcore with the run's worker count; ``lbcore-2w``/``haproxy-2t``
    -> that many workers/threads."""
    m = re.fullmatch(r"([a-z]+)(?:-(\d+)[wt])?", label)
    if not m or m.group(1) not in KINDS:
        raise ValueError(f"unknown server {label!r}")
    kind = m.group(1)
    if m.group(2):
        return ServerSpec(label, kind, int(m.group(2)))
    workers = default_workers if kind in ("lbcore", "haproxy", "nginx") else 1
    return ServerSpec(label, kind, workers)


def unverified_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def get(port: int, tls: bool, path: str = "/", timeout: float = 3.0) -> int:
    """One GET through the server; its status."""
    if tls:
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=timeout, context=unverified_context()
        )
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": SERVER_NAME})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


@dataclass
class Running:
    """A started server: its process, port, and, for haproxy, its stats socket."""

    spec: ServerSpec
    proc: Managed
    fe: Frontend
    stats_socket: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.spec.label

    def pids(self) -> list[int]:
        return self.proc.tree()

    def alive(self) -> bool:
        return self.proc.alive()

    def tls_sessions(self) -> tuple[int, int] | None:
        """(TLS handshakes, of which resumed) on the frontend so far, as the server
        counts them: haproxy's ``show stat``, lbcore's admin /stats.json. None for the
        others, or when the server does not say."""
        if self.fe.tls is None:
            return None
        try:
            if self.stats_socket is not None:
                return _haproxy_tls_sessions(self.stats_socket)
            if self.fe.admin_port is not None:
                return _lbcore_tls_sessions(self.fe.admin_port)
        except (OSError, ValueError, KeyError, http.client.HTTPException):
            return None
        return None

    def stop(self) -> None:
        # lbcore drains for its Spec's drain timeout (1s); haproxy's SIGTERM is a hard
        # stop; nginx and stunnel stop on SIGTERM (nginx's fast shutdown).
        self.proc.stop(signal.SIGTERM, grace=10.0)


def _haproxy_tls_sessions(sock_path: Path) -> tuple[int, int] | None:
    text = _haproxy_command(sock_path, "show stat")
    rows = list(csv.reader(io.StringIO(text.lstrip("# "))))
    header = rows[0]
    for row in rows[1:]:
        data = dict(zip(header, row))
        if data.get("svname") == "FRONTEND" and data.get("ssl_sess", "") != "":
            # ssl_sess counts new (full) sessions, ssl_reused_sess the resumed ones.
            full, resumed = int(data["ssl_sess"] or 0), int(data["ssl_reused_sess"] or 0)
            return full + resumed, resumed
    return None


def _lbcore_tls_sessions(admin_port: int) -> tuple[int, int] | None:
    conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=3.0)
    try:
        conn.request("GET", "/stats.json")
        snapshot = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    for listener in snapshot["listeners"]:
        if listener["name"] == "bench":
            tls = listener["tls"]
            return tls["full"] + tls["resumed"], tls["resumed"]
    return None


def _haproxy_command(sock_path: Path, command: str) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(3.0)
        s.connect(str(sock_path))
        s.sendall(command.encode() + b"\n")
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks).decode(errors="replace")


def _wait_ready(proc: Managed, fe: Frontend, timeout: float = READY_TIMEOUT) -> None:
    wait_for_port(fe.port, timeout, proc)
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if not proc.alive():
            raise StartFailed(f"{proc.name} exited with status {proc.returncode()}:\n{proc.log_tail()}")
        try:
            status = get(fe.port, fe.tls is not None)
            if status == 200:
                return
            last = f"status {status}"
        except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.1)
    raise StartFailed(f"{proc.name} does not answer GET / with 200 after {timeout:g}s (last: {last}):\n{proc.log_tail()}")


def start(spec: ServerSpec, fe: Frontend, workdir: Path, cpu: str) -> Running:
    workdir.mkdir(parents=True, exist_ok=True)
    starter = {
        "lbcore": _start_lbcore,
        "haproxy": _start_haproxy,
        "naive": _start_naive,
        "nginx": _start_nginx,
        "stunnel": _start_stunnel,
    }[spec.kind]
    return starter(spec, fe, workdir, cpu)


def _start_lbcore(spec: ServerSpec, fe: Frontend, workdir: Path, cpu: str) -> Running:
    spec_path = workdir / "lbcore.yaml"
    spec_path.write_text(yaml.safe_dump(configs.lbcore_spec(fe), sort_keys=False))
    check = subprocess.run(
        [sys.executable, "-m", "lbcore.cli", "check", str(spec_path)],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    if check.returncode != 0:
        reason = (check.stderr or check.stdout).strip()
        if fe.tls is not None:
            raise Unavailable(f"lbcore check refuses an https listener: {reason}")
        raise StartFailed(f"lbcore check refuses the bench Spec: {reason}")
    argv = [sys.executable, "-m", "lbcore.cli", "serve", str(spec_path), "--workers", str(spec.workers),
            "--log-level", "WARNING"]
    proc = Managed(spec.label, argv, cpu, workdir / "lbcore.log", cwd=ROOT).start()
    running = Running(spec, proc, fe)
    try:
        _wait_ready(proc, fe)
    except StartFailed as exc:
        proc.stop()
        if fe.tls is not None:
            # The https listener is accepted by the schema before the engine serves it.
            raise Unavailable(f"lbcore does not serve https yet: {_first_error(str(exc))}") from None
        raise
    return running


def _first_error(text: str) -> str:
    """The line of lbcore's log that says why, without its timestamp."""
    lines = text.splitlines()
    for line in lines:
        if "not served" in line:
            return line.strip()
    for index, line in enumerate(lines):
        if "ERROR" in line:
            following = lines[index + 1].strip() if index + 1 < len(lines) else ""
            return (line.split("ERROR", 1)[1].strip() + " " + following).strip()
    return lines[0] if lines else text


def _start_haproxy(spec: ServerSpec, fe: Frontend, workdir: Path, cpu: str) -> Running:
    cfg = workdir / "haproxy.cfg"
    sock = workdir / "haproxy.sock"
    cfg.write_text(configs.haproxy_cfg(replace_workers(fe, spec.workers), sock))
    # -W: master-worker (the master is part of the measured tree); -db: foreground.
    proc = Managed(spec.label, ["haproxy", "-W", "-db", "-f", str(cfg)], cpu, workdir / "haproxy.log").start()
    running = Running(spec, proc, replace_workers(fe, spec.workers), stats_socket=sock)
    _ready_or_stop(proc, running.fe)
    return running


def _start_naive(spec: ServerSpec, fe: Frontend, workdir: Path, cpu: str) -> Running:
    argv = [sys.executable, str(ROOT / "bench" / "naive_proxy.py"),
            "--listen", f"127.0.0.1:{fe.port}", "--backend", f"127.0.0.1:{fe.backend_port}"]
    if fe.tls is not None:
        argv += ["--cert", str(fe.tls.cert), "--key", str(fe.tls.key)]
        if not fe.resume:
            argv.append("--no-resume")
    proc = Managed(spec.label, argv, cpu, workdir / "naive.log").start()
    running = Running(spec, proc, fe)
    _ready_or_stop(proc, fe)
    return running


def _start_nginx(spec: ServerSpec, fe: Frontend, workdir: Path, cpu: str) -> Running:
    fe = replace_workers(fe, spec.workers)
    conf = workdir / "nginx.conf"
    conf.write_text(configs.nginx_proxy_conf(fe, workdir))
    proc = Managed(spec.label, nginx_argv(workdir, conf), cpu, workdir / "nginx.log").start()
    running = Running(spec, proc, fe)
    _ready_or_stop(proc, fe)
    return running


def _start_stunnel(spec: ServerSpec, fe: Frontend, workdir: Path, cpu: str) -> Running:
    if fe.tls is None:
        raise Unavailable("stunnel serves TLS scenarios only")
    conf = workdir / "stunnel.conf"
    conf.write_text(configs.stunnel_conf(fe, workdir))
    proc = Managed(spec.label, ["stunnel4", str(conf)], cpu, workdir / "stunnel.log").start()
    running = Running(spec, proc, fe)
    _ready_or_stop(proc, fe)
    return running


def _ready_or_stop(proc: Managed, fe: Frontend) -> None:
    try:
        _wait_ready(proc, fe)
    except StartFailed:
        proc.stop()
        raise


def replace_workers(fe: Frontend, workers: int) -> Frontend:
    return replace(fe, workers=workers)


def nginx_argv(workdir: Path, conf: Path) -> list[str]:
    # -e: nginx opens its error log before reading the configuration.
    return ["nginx", "-p", str(workdir), "-e", str(workdir / "error.log"), "-c", str(conf), "-g", "daemon off;"]


def start_backend(workdir: Path, port: int, cpu: str) -> Managed:
    """The nginx backend (one worker, pinned with the load generator)."""
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "nginx.conf"
    conf.write_text(configs.backend_nginx_conf(port, workdir))
    proc = Managed("backend", nginx_argv(workdir, conf), cpu, workdir / "nginx.log").start()
    try:
        wait_for_port(port, READY_TIMEOUT, proc)
        status = get(port, False)
        if status != 200:
            raise StartFailed(f"the nginx backend answers {status}")
    except (StartFailed, OSError, http.client.HTTPException):
        proc.stop()
        raise
    return proc
