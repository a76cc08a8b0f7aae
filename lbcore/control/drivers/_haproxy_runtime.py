"""Talking to a running haproxy: the master CLI, ``show proc``, ``show stat``, stats.

``MasterCli`` sends one command per connection to the master socket (``-S``) and
reads the answer until the master closes (the write side is shut so the master
knows the command is complete). Commands for a worker are prefixed ``@!PID``.
While the master re-executes itself on a reload its socket refuses or resets
connections: ``command`` retries until its deadline.

``stats_snapshot`` maps ``show stat`` rows into the structure lbcore's own engine
reports (``lbcore.proxy.stats``): listeners, pools with members, info. A pool
served by several haproxy backends (its HTTP backend and one per tcp listener) is
the sum of their rows. Fields haproxy does not count are None (``no_member``,
``queue_timeouts``, ``tls``, the latency histogram); ``queued`` is haproxy's
current queue, not a total.
"""

from __future__ import annotations

import csv
import io
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from lbcore import spec as S
from lbcore.proxy.stats import operating_status

from ._render_haproxy import Layout

__all__ = ["CliError", "MasterCli", "ProcInfo", "parse_show_info", "parse_show_proc", "parse_show_stat", "stats_snapshot"]

RESPONSE_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "other")
RETRY_INTERVAL = 0.02  # seconds between attempts on a master socket that is not there yet


class CliError(RuntimeError):
    """The master CLI could not be reached, or a command failed."""


class MasterCli:
    """One command per connection to haproxy's master socket."""

    def __init__(self, path: str) -> None:
        self.path = path

    def command(self, text: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._once(text, max(0.1, deadline - time.monotonic()))
            except (TimeoutError, ConnectionError, FileNotFoundError) as exc:
                if time.monotonic() >= deadline:
                    raise CliError(f"haproxy master socket {self.path}: {exc}") from None
            # The master re-executes itself on a reload and its socket is briefly
            # gone: poll it at a short interval until the deadline.
            time.sleep(RETRY_INTERVAL)

    def send_once(self, text: str, timeout: float = 10.0) -> str:
        """Send a command exactly once (``reload``: never repeated on a reset; the
        master may close the connection as it re-executes)."""
        try:
            return self._once(text, timeout)
        except (ConnectionResetError, BrokenPipeError):
            return ""
        except (TimeoutError, ConnectionRefusedError, FileNotFoundError) as exc:
            raise CliError(f"haproxy master socket {self.path}: {exc}") from None

    def _once(self, text: str, timeout: float) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(self.path)
            sock.sendall(text.encode("utf-8") + b"\n")
            sock.shutdown(socket.SHUT_WR)
            chunks = []
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        return b"".join(chunks).decode("utf-8", "replace")

    def worker(self, pid: int, text: str, timeout: float = 10.0) -> str:
        return self.command(f"@!{pid} {text}", timeout)


@dataclass(frozen=True)
class ProcInfo:
    """``show proc``: the master and its workers (current and old)."""

    master_pid: int
    reloads: int
    failed: int
    workers: tuple[int, ...]
    old_workers: tuple[int, ...] = field(default=())


def parse_show_proc(text: str) -> ProcInfo:
    section = "master"
    master_pid = reloads = failed = 0
    workers: list[int] = []
    old: list[int] = []
    for line in text.splitlines():
        if line.startswith("#"):
            lowered = line.lower()
            if "old workers" in lowered:
                section = "old"
            elif "workers" in lowered:
                section = "workers"
            elif "programs" in lowered:
                section = "programs"
            continue
        parts = line.split()
        if len(parts) < 3 or not parts[0].isdigit():
            continue
        pid = int(parts[0])
        if parts[1] == "master":
            master_pid = pid
            reloads = int(parts[2])
            if "[failed:" in line:
                failed = int(line.split("[failed:", 1)[1].split("]", 1)[0].strip())
        elif section == "workers" and parts[1] == "worker":
            workers.append(pid)
        elif section == "old" and parts[1] == "worker":
            old.append(pid)
    if not master_pid:
        raise CliError(f"unexpected show proc answer: {text[:200]!r}")
    return ProcInfo(master_pid, reloads, failed, tuple(workers), tuple(old))


def parse_show_info(text: str) -> dict[str, str]:
    info = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    return info


def parse_show_stat(text: str) -> list[dict[str, str]]:
    """``show stat`` CSV rows as dicts (haproxy's header line starts with ``# ``)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("# "):
        raise CliError(f"unexpected show stat answer: {text[:200]!r}")
    reader = csv.DictReader(io.StringIO("\n".join([lines[0][2:]] + lines[1:])))
    return [dict(row) for row in reader]


# -- haproxy rows -> lbcore's stats structure -----------------------------------------------


def _int(row: dict[str, str] | None, key: str) -> int:
    if row is None:
        return 0
    value = row.get(key) or ""
    return int(value) if value.lstrip("-").isdigit() else 0


def _responses(rows: list[dict[str, str]]) -> dict[str, int]:
    return {klass: sum(_int(row, f"hrsp_{klass}") for row in rows) for klass in RESPONSE_CLASSES}


def member_status(row: dict[str, str]) -> str:
    """haproxy's server status -> lbcore's UP, DOWN, MAINT, DRAIN, NO_CHECK."""
    status = (row.get("status") or "").upper()
    if status.startswith("MAINT"):
        return "MAINT"
    if status.startswith("DOWN"):
        return "DOWN"
    if status.startswith(("DRAIN", "NOLB")):
        return "DRAIN"
    if status.startswith("NO CHECK"):
        return "DRAIN" if row.get("weight") == "0" else "NO_CHECK"
    if status.startswith("UP"):
        return "DRAIN" if row.get("weight") == "0" else "UP"
    return status or "NO_CHECK"


# The native engine's derivation, so both drivers report the same statuses.
_operating = operating_status


def _admin(status: str) -> str:
    return {"MAINT": "maint", "DRAIN": "drain"}.get(status, "enabled")


def stats_snapshot(
    spec: S.Spec, layout: Layout, rows: list[dict[str, str]], info: dict[str, str], now: float | None = None
) -> dict[str, Any]:
    """lbcore's stats structure (see ``lbcore.proxy.stats``) from haproxy's rows."""
    now = time.time() if now is None else now
    by_proxy: dict[str, dict[str, dict[str, str]]] = {}
    for row in rows:
        by_proxy.setdefault(row.get("pxname", ""), {})[row.get("svname", "")] = row
    pools = []
    pool_status: dict[str, str] = {}
    for pool in spec.pools:
        backends = [by_proxy.get(name, {}) for name in layout.backends.get(pool.name, ())]
        primary = backends[0] if backends else {}
        members = []
        up = 0
        for member in pool.members:
            mrows = [b[member.name] for b in backends if member.name in b]
            head = primary.get(member.name) or (mrows[0] if mrows else {})
            status = member_status(head) if head else "NO_CHECK"
            if status in ("UP", "NO_CHECK", "DRAIN"):
                up += 1
            check = None
            if pool.health is not None and head:
                check = {
                    "enabled": bool(head.get("check_status")),
                    "code": head.get("check_status") or None,
                    "status": _int(head, "check_code") or None,
                    "duration_ms": _int(head, "check_duration") if head.get("check_duration") else None,
                    "detail": head.get("check_desc") or "",
                    "at": None,
                    "rise": pool.health.rise,
                    "fall": pool.health.fall,
                }
            members.append({
                "name": member.name,
                "address": str(member.address),
                "weight": _int(head, "uweight") if head.get("uweight") else member.weight,
                "effective_weight": _int(head, "weight"),
                "backup": member.backup,
                "admin": _admin(status),
                "status": status,
                "operating_status": _operating(status, pool.health is not None),
                "check": check,
                "active": sum(_int(r, "scur") for r in mrows),
                "conns_total": sum(_int(r, "stot") for r in mrows),
                "requests": sum(_int(r, "stot") for r in mrows),
                "responses": _responses(mrows),
                "connect_errors": sum(_int(r, "econ") for r in mrows),
                "response_errors": sum(_int(r, "eresp") for r in mrows),
                "bytes_in": sum(_int(r, "bin") for r in mrows),
                "bytes_out": sum(_int(r, "bout") for r in mrows),
                "latency": None,
            })
        totals = [b.get("BACKEND") for b in backends if b.get("BACKEND")]
        maint = sum(1 for m in members if m["status"] == "MAINT")
        if not pool.members:
            status = "OFFLINE"
        elif up == 0:
            status = "ERROR"
        elif up < len(pool.members) - maint:
            status = "DEGRADED"
        elif pool.health is None:
            status = "NO_MONITOR"
        else:
            status = "ONLINE"
        pool_status[pool.name] = status
        pools.append({
            "name": pool.name,
            "algorithm": pool.algorithm + (f"({pool.hash_header})" if pool.hash_header else ""),
            "status": status,
            "requests": sum(_int(t, "req_tot") or _int(t, "stot") for t in totals),  # type: ignore[arg-type]
            "responses": _responses(totals),  # type: ignore[arg-type]
            "connect_errors": sum(_int(t, "econ") for t in totals),  # type: ignore[arg-type]
            "response_errors": sum(_int(t, "eresp") for t in totals),  # type: ignore[arg-type]
            "retries": sum(_int(t, "wretr") for t in totals),  # type: ignore[arg-type]
            "redispatches": sum(_int(t, "wredis") for t in totals),  # type: ignore[arg-type]
            "queued": sum(_int(t, "qcur") for t in totals),  # type: ignore[arg-type]
            "queue_timeouts": None,
            "no_member": None,
            "active": sum(m["active"] for m in members),
            "members": members,
        })
    listeners = []
    for listener in spec.listeners:
        row = by_proxy.get(layout.frontends.get(listener.name, ""), {}).get("FRONTEND")
        http = listener.protocol in ("http", "https")
        default = pool_status.get(listener.default_pool or "", "ONLINE")
        listeners.append({
            "name": listener.name,
            "protocol": listener.protocol,
            "bind": str(listener.bind),
            "status": (row or {}).get("status") or "UNKNOWN",
            "operating_status": "DEGRADED" if default in ("ERROR", "DEGRADED") else "ONLINE",
            "conns_cur": _int(row, "scur"),
            "conns_max": _int(row, "smax"),
            "conns_total": _int(row, "stot"),
            "requests": _int(row, "req_tot") if http else _int(row, "stot"),
            "responses": _responses([row] if row else []),
            "bytes_in": _int(row, "bin"),
            "bytes_out": _int(row, "bout"),
            "denied": _int(row, "dreq"),
            "errors": _int(row, "ereq"),
            "tls": None,
            "workers": None,  # haproxy 2.6's stats have no frontend counts per thread
        })
    uptime = int(info.get("Uptime_sec", "0") or 0)
    return {
        "info": {
            "version": f"haproxy {info.get('Version', '')}".strip(),
            "pid": int(info.get("Pid", "0") or 0),
            "uptime_s": uptime,
            "started_at": now - uptime,
            "revision": spec.revision,
            "workers": int(info.get("Nbthread", "1") or 1),
        },
        "listeners": listeners,
        "pools": pools,
    }
