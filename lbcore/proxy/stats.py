"""Counters: plain integers in each worker, summed by the supervisor.

Workers increment slotted integer fields on the request path (no locks, no
dictionaries keyed per request, nothing formatted) and every FLUSH_INTERVAL send
the *deltas* since the previous flush to the supervisor, plus the gauges (current
connections, requests in flight) as absolute values. Deltas survive a worker
restart: the totals never go backwards when a worker dies.

The supervisor's Aggregate turns those into one snapshot, the single structure
that every surface reads (Prometheus /metrics, the stats page, the runtime
socket's ``show stat``). Its shape, as JSON:

    {"info": {"version", "pid", "uptime_s", "revision", "workers", "started_at"},
     "listeners": [{"name", "protocol", "bind", "status", "conns_cur", "conns_max",
                    "conns_total", "requests", "responses": {"1xx".."5xx", "other"},
                    "bytes_in", "bytes_out", "denied", "errors", "tls": {"full",
                    "resumed", "failed"},
                    "workers": [{"worker", "conns_cur", "conns_total"}, ...]}],
     "pools": [{"name", "algorithm", "status", "requests", "responses": {...},
                "connect_errors", "response_errors", "retries", "redispatches",
                "queued", "queue_timeouts", "no_member", "active",
                "members": [{"name", "address", "weight", "effective_weight",
                             "backup", "admin", "status", "operating_status",
                             "check": {...} | null, "active", "conns_total",
                             "requests", "responses": {...}, "connect_errors",
                             "response_errors", "bytes_in", "bytes_out",
                             "latency": {"buckets": [[le_seconds, cumulative], ...],
                                         "sum": seconds, "count": n}}]}]}
"""

from __future__ import annotations

from array import array
from typing import Any, Iterable

__all__ = [
    "FLUSH_INTERVAL",
    "LATENCY_BUCKETS",
    "ListenerCounters",
    "PoolCounters",
    "MemberCounters",
    "WorkerStats",
    "Aggregate",
    "RESPONSE_CLASSES",
    "operating_status",
]

FLUSH_INTERVAL = 1.0  # seconds between worker -> supervisor flushes

# Request latency histogram bounds, seconds (Prometheus-style "le" buckets).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

RESPONSE_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "other")




class _Counters:
    """Integer fields; ``take()`` returns and resets the counters (gauges are kept)."""

    __slots__ = ()
    COUNTERS: tuple[str, ...] = ()
    GAUGES: tuple[str, ...] = ()

    def __init__(self) -> None:
        for name in self.COUNTERS + self.GAUGES:
            setattr(self, name, 0)
        # Counts by class in a machine-integer array, not a list of ints: compiled, a
        # typed memoryview over it (stats.pxd), so a response adds one to a C integer in
        # place, where a list made a new int object for every count past 256.
        self.responses = array("q", bytes(8 * 6))  # type: ignore[attr-defined]

    def response(self, status: int) -> None:
        """Count a response by its status class (RESPONSE_CLASSES; "other" outside 1xx-5xx)."""
        klass = status // 100  # compiled: C integers, no table in a module global
        self.responses[klass - 1 if 1 <= klass <= 5 else 5] += 1  # type: ignore[attr-defined]

    def take(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.COUNTERS:
            value = getattr(self, name)
            if value:
                out[name] = value
                setattr(self, name, 0)
        for name in self.GAUGES:
            out[name] = getattr(self, name)
        responses = [self.responses[i] for i in range(6)]  # type: ignore[attr-defined]
        if any(responses):
            out["responses"] = responses
            for i in range(6):
                self.responses[i] = 0  # type: ignore[attr-defined]
        return out


class ListenerCounters(_Counters):
    COUNTERS = ("conns_total", "requests", "bytes_in", "bytes_out", "denied", "errors", "tls_full", "tls_resumed", "tls_failed")
    GAUGES = ("conns_cur",)
    __slots__ = COUNTERS + GAUGES + ("responses",)


class PoolCounters(_Counters):
    COUNTERS = ("requests", "connect_errors", "response_errors", "retries", "redispatches", "queued", "queue_timeouts", "no_member")
    GAUGES = ()
    __slots__ = COUNTERS + ("responses",)


class MemberCounters(_Counters):
    COUNTERS = ("conns_total", "requests", "connect_errors", "response_errors", "bytes_in", "bytes_out", "latency_sum_us")
    GAUGES = ()
    __slots__ = COUNTERS + ("responses", "latency")

    def __init__(self) -> None:
        super().__init__()
        # Non-cumulative; the last is +Inf. An array, as ``responses`` (see there).
        self.latency = array("q", bytes(8 * (len(LATENCY_BUCKETS) + 1)))

    def observe(self, seconds: float) -> None:
        # Compiled, micros is a C long long (stats.pxd): no Python int is made. A duration
        # that is not a finite number (never one the engine measures) adds nothing, in
        # both builds: converting it in C would be undefined.
        micros = int(seconds * 1_000_000) if -1e12 < seconds < 1e12 else 0
        self.latency_sum_us += micros
        # The first bucket whose bound is >= seconds; past the last bound, +Inf. A scan
        # from the lowest, as bisect_left decides it (NaN: the first): most requests
        # stop at the first bound, and compiled the bounds are C doubles.
        index = 0
        for bound in LATENCY_BUCKETS:
            if not bound < seconds:
                break
            index += 1
        self.latency[index] += 1

    def take(self) -> dict[str, Any]:
        out = super().take()
        latency = [self.latency[i] for i in range(len(LATENCY_BUCKETS) + 1)]
        if any(latency):
            out["latency"] = latency
            for i in range(len(LATENCY_BUCKETS) + 1):
                self.latency[i] = 0
        return out


class WorkerStats:
    """One worker's counters, by listener, pool and (pool, member)."""

    def __init__(self) -> None:
        self.listeners: dict[str, ListenerCounters] = {}
        self.pools: dict[str, PoolCounters] = {}
        self.members: dict[tuple[str, str], MemberCounters] = {}

    def listener(self, name: str) -> ListenerCounters:
        c = self.listeners.get(name)
        if c is None:
            c = self.listeners[name] = ListenerCounters()
        return c

    def pool(self, name: str) -> PoolCounters:
        c = self.pools.get(name)
        if c is None:
            c = self.pools[name] = PoolCounters()
        return c

    def member(self, pool: str, name: str) -> MemberCounters:
        key = (pool, name)
        c = self.members.get(key)
        if c is None:
            c = self.members[key] = MemberCounters()
        return c

    def take(self, active: Iterable[tuple[str, str, int]] = ()) -> dict[str, Any]:
        """Deltas since the last take, plus gauges; ``active`` = (pool, member, in flight)."""
        return {
            "listeners": {k: v.take() for k, v in self.listeners.items()},
            "pools": {k: v.take() for k, v in self.pools.items()},
            "members": {f"{p}/{m}": v.take() for (p, m), v in self.members.items()},
            "active": {f"{p}/{m}": n for p, m, n in active},
        }


def _empty(fields: Iterable[str]) -> dict[str, Any]:
    out: dict[str, Any] = {name: 0 for name in fields}
    out["responses"] = [0] * 6
    return out


class Aggregate:
    """The supervisor's sums over every worker's flushes."""

    def __init__(self) -> None:
        self.listeners: dict[str, dict[str, Any]] = {}
        self.pools: dict[str, dict[str, Any]] = {}
        self.members: dict[str, dict[str, Any]] = {}
        self.gauges: dict[int, dict[str, Any]] = {}  # worker index -> last gauges
        self.conns_max: dict[str, int] = {}
        # worker index -> listener -> connections it accepted: how the connections
        # split between workers (a worker restarted at an index goes on counting).
        self.accepted: dict[int, dict[str, int]] = {}

    def add(self, worker: int, flush: dict[str, Any]) -> None:
        for table, source, fields in (
            (self.listeners, flush.get("listeners", {}), ListenerCounters.COUNTERS),
            (self.pools, flush.get("pools", {}), PoolCounters.COUNTERS),
            (self.members, flush.get("members", {}), MemberCounters.COUNTERS),
        ):
            for name, delta in source.items():
                row = table.get(name)
                if row is None:
                    row = table[name] = _empty(fields)
                for field, value in delta.items():
                    if field == "responses":
                        row["responses"] = [a + b for a, b in zip(row["responses"], value)]
                    elif field == "latency":
                        prior = row.get("latency") or [0] * len(value)
                        row["latency"] = [a + b for a, b in zip(prior, value)]
                    elif field in fields:
                        row[field] = row.get(field, 0) + value
        accepted = self.accepted.setdefault(worker, {})
        for name, delta in flush.get("listeners", {}).items():
            if delta.get("conns_total"):
                accepted[name] = accepted.get(name, 0) + delta["conns_total"]
        self.gauges[worker] = {
            "conns_cur": {k: v.get("conns_cur", 0) for k, v in flush.get("listeners", {}).items()},
            "active": dict(flush.get("active", {})),
        }
        for name in self.listeners:
            self.conns_max[name] = max(self.conns_max.get(name, 0), self.conns_cur(name))

    def forget_worker(self, worker: int) -> None:
        self.gauges.pop(worker, None)

    def conns_cur(self, listener: str) -> int:
        return sum(g["conns_cur"].get(listener, 0) for g in self.gauges.values())

    def worker_rows(self, listener: str, workers: int) -> list[dict[str, int]]:
        """Per worker index (0..workers-1, and any other that reported, such as one
        waiting to be started again): the listener's connections open now and
        accepted since the start."""
        indexes = sorted(set(range(workers)) | set(self.gauges) | set(self.accepted))
        return [{"worker": index,
                 "conns_cur": self.gauges.get(index, {}).get("conns_cur", {}).get(listener, 0),
                 "conns_total": self.accepted.get(index, {}).get(listener, 0)} for index in indexes]

    def active(self, key: str) -> int:
        return sum(g["active"].get(key, 0) for g in self.gauges.values())

    def listener_row(self, name: str) -> dict[str, Any]:
        return self.listeners.get(name) or _empty(ListenerCounters.COUNTERS)

    def pool_row(self, name: str) -> dict[str, Any]:
        return self.pools.get(name) or _empty(PoolCounters.COUNTERS)

    def member_row(self, pool: str, member: str) -> dict[str, Any]:
        return self.members.get(f"{pool}/{member}") or _empty(MemberCounters.COUNTERS)


def operating_status(status: str, monitored: bool) -> str:
    """Octavia-style operating status of a member from its status (UP, DOWN, DRAIN, MAINT, NO_CHECK)."""
    return {
        "MAINT": "OFFLINE",
        "DRAIN": "DRAINING",
        "DOWN": "ERROR",
        "NO_CHECK": "NO_MONITOR" if not monitored else "ONLINE",
    }.get(status, "ONLINE")


def responses_dict(values: list[int]) -> dict[str, int]:
    return dict(zip(RESPONSE_CLASSES, values))


def latency_dict(row: dict[str, Any]) -> dict[str, Any]:
    counts = row.get("latency") or [0] * (len(LATENCY_BUCKETS) + 1)
    cumulative = []
    running = 0
    for bound, count in zip(LATENCY_BUCKETS, counts):
        running += count
        cumulative.append([bound, running])
    running += counts[-1]
    cumulative.append(["+Inf", running])
    return {"buckets": cumulative, "sum": row.get("latency_sum_us", 0) / 1_000_000, "count": running}
