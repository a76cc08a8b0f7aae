"""What the one-off tools (``--profile``, ``--perf``) set up around a server under load.

``stage(load_cpu, prefix)`` yields a ``Stage``: a work directory (removed afterwards),
free ports, the nginx backend pinned to the load CPU, and a UDP port for access logs
that is held and never read (as in the scenarios). ``wrk(...)`` starts the load of a
scenario on one URL.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench import servers
from bench.load import wrk_argv
from bench.run import Ports
from bench.scenarios import Scenario

__all__ = ["Stage", "stage", "wrk"]


@dataclass(frozen=True)
class Stage:
    workdir: Path
    ports: Ports
    backend_port: int
    log_port: int


@contextmanager
def stage(load_cpu: str, prefix: str) -> Iterator[Stage]:
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    workdir.chmod(0o755)
    ports = Ports()
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    backend = None
    try:
        sink.bind(("127.0.0.1", 0))
        backend_port = ports.take()
        backend = servers.start_backend(workdir / "backend", backend_port, load_cpu)
        yield Stage(workdir, ports, backend_port, sink.getsockname()[1])
    finally:
        if backend is not None:
            backend.stop()
        sink.close()
        shutil.rmtree(workdir, ignore_errors=True)


def wrk(scenario: Scenario, url: str, seconds: int, load_cpu: str) -> subprocess.Popen:
    """wrk with the scenario's connections and Lua script, pinned to the load CPU, as the
    scenarios run it (``load.wrk_argv``); stdout piped."""
    return subprocess.Popen(
        wrk_argv(url, cpu=load_cpu, seconds=seconds, connections=scenario.connections, script=scenario.script),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
