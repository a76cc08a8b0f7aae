"""Processes the harness starts, and what /proc says about them.

A server under test is a process tree (lbcore: supervisor + workers; haproxy and
nginx: master + worker; stunnel: one process, many threads). Its cost over a run is
the user+system CPU time of every process in the tree, read from
``/proc/PID/stat`` before and after (``utime`` + ``stime`` cover all of a process's
threads, the exited ones included); its memory is the sum of the resident set sizes
from ``/proc/PID/statm``.

Every process is started under ``taskset`` on the CPU it is pinned to and in a new
session, and is stopped by its own pid: SIGTERM, then SIGKILL for each process of
the tree that outlives the grace period.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

__all__ = [
    "CLK_TCK",
    "CpuSample",
    "CpuUse",
    "Managed",
    "StartFailed",
    "cpu_sample",
    "process_tree",
    "rss_bytes",
    "time_wait_count",
    "wait_for_port",
]

CLK_TCK = os.sysconf("SC_CLK_TCK")  # /proc/PID/stat times are in these ticks (100 Hz on Linux)
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
TCP_TIME_WAIT = "06"  # the st column of /proc/net/tcp (include/net/tcp_states.h)


class StartFailed(RuntimeError):
    """A process exited or never listened; ``reason`` says why, with its log's tail."""


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat from the state on (field 3), or None if it is gone.
    The command name (field 2) may hold spaces and parentheses: split after the last ')'."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return data[data.rindex(b")") + 2:].decode().split()


def _running(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def process_tree(root: int) -> list[int]:
    """``root`` and its descendants, by parent pid (a scan of /proc: this kernel has no
    /proc/PID/task/TID/children)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat(int(entry))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    if _stat(root) is None:
        return []
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return sorted(tree)


@dataclass(frozen=True, slots=True)
class CpuUse:
    """CPU seconds a tree used between two samples: user + system, and the pids that
    were there before and gone after (a worker that died mid-run: its time is lost,
    and the run says so)."""

    user: float
    system: float
    lost: list[int]
    by_process: list[float] = field(default_factory=list)  # CPU seconds of each, largest first
    switches: tuple[int, int] = (0, 0)  # context switches of all their threads: voluntary, not

    @property
    def total(self) -> float:
        return self.user + self.system


@dataclass(frozen=True, slots=True)
class CpuSample:
    """(user, system) CPU ticks per pid of one tree at one moment."""

    at: float
    ticks: Mapping[int, tuple[int, int]]
    switches: Mapping[int, tuple[int, int]] = field(default_factory=dict)

    def until(self, later: "CpuSample") -> CpuUse:
        user = system = 0
        by_process = []
        voluntary = involuntary = 0
        for pid, (u, s) in later.ticks.items():
            u0, s0 = self.ticks.get(pid, (0, 0))
            user += u - u0
            system += s - s0
            by_process.append((u - u0 + s - s0) / CLK_TCK)
            v, i = later.switches.get(pid, (0, 0))
            v0, i0 = self.switches.get(pid, (v, i))
            voluntary += v - v0
            involuntary += i - i0
        lost = sorted(pid for pid in self.ticks if pid not in later.ticks)
        return CpuUse(user / CLK_TCK, system / CLK_TCK, lost, sorted(by_process, reverse=True),
                      (voluntary, involuntary))


def cpu_sample(pids: Sequence[int]) -> CpuSample:
    ticks, switches = {}, {}
    for pid in pids:
        fields = _stat(pid)
        if fields is not None:
            ticks[pid] = (int(fields[11]), int(fields[12]))  # utime, stime (fields 14 and 15)
            switches[pid] = _context_switches(pid)
    return CpuSample(time.monotonic(), ticks, switches)


def _context_switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of all of ``pid``'s threads so far."""
    voluntary = involuntary = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return 0, 0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        voluntary += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        involuntary += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return voluntary, involuntary


def rss_bytes(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * PAGE_SIZE
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def time_wait_count() -> int:
    """Sockets in TIME_WAIT on this host (IPv4 and IPv6)."""
    count = 0
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    if line.split(None, 4)[3] == TCP_TIME_WAIT:
                        count += 1
        except FileNotFoundError:
            pass
    return count


def wait_for_port(port: int, timeout: float, proc: "Managed | None" = None, host: str = "127.0.0.1") -> None:
    """Until something accepts TCP connections on ``port``; StartFailed if ``proc``
    exits first or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and not proc.alive():
            raise StartFailed(f"{proc.name} exited with status {proc.returncode()} before listening on {port}:\n{proc.log_tail()}")
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            tail = f":\n{proc.log_tail()}" if proc is not None else ""
            raise StartFailed(f"nothing listens on {host}:{port} after {timeout:g}s{tail}")
        time.sleep(0.05)


@dataclass
class Managed:
    """A process the harness started, pinned to ``cpu``, its output in ``log_path``."""

    name: str
    argv: Sequence[str]
    cpu: str
    log_path: Path
    cwd: Path | None = None
    env: Mapping[str, str] | None = None
    stdin: int | None = subprocess.DEVNULL
    proc: subprocess.Popen | None = field(default=None, init=False)

    def start(self) -> "Managed":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        env = dict(os.environ, **(self.env or {}))
        try:
            self.proc = subprocess.Popen(
                ["taskset", "-c", self.cpu, *self.argv],
                stdin=self.stdin,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=env,
                start_new_session=True,
            )
        finally:
            log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def tree(self) -> list[int]:
        return process_tree(self.pid) if self.alive() else []

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no output)"
        return "\n".join(text.rstrip().splitlines()[-lines:]) or "(no output)"

    def stop(self, sig: int = signal.SIGTERM, grace: float = 10.0) -> None:
        """``sig`` to the root process; after ``grace`` seconds SIGKILL to each pid of
        the tree still alive (pids collected before the signal: only ours)."""
        if self.proc is None:
            return
        tree = process_tree(self.pid)
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if self.proc.poll() is not None and not any(_running(pid) for pid in tree if pid != self.pid):
                return
            time.sleep(0.05)
        for pid in tree:
            if pid != self.pid and not _running(pid):
                continue
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            pass
