"""Health checks, run once by the supervisor for every worker: the HealthMonitor.

Theory of operation
-------------------
``apply(spec)`` makes the tracked members match the Spec. A member is tracked when
its pool has ``health`` (an active check) or ``outlier`` (passive ejection); the
engine takes every other member as up. Each tracked member of a pool with ``health``
has one task that loops:

    wait -> check_once(health, member.check_address) -> MemberHealth.record -> on_change?

The first wait is ``uniform(0, interval)``, so the first checks of a pool's members
are spread over the first interval instead of firing in lockstep; each later wait is
``interval * (1 + uniform(-jitter, jitter))``, counted from the end of the previous
check (as haproxy's ``inter``). Every change of a member's ``up`` calls
``on_change(pool, member, up, last result)`` once; the supervisor forwards it to all
workers, so a verdict reaches every one of them at once.

What a reload keeps, per (pool, member):

    check and check address unchanged   MemberHealth and task kept
    check parameters changed            verdict kept (rebased on the new rise/fall), task restarted
    check address changed               a new server: fresh MemberHealth (UP), task restarted
    pool keeps only outlier             fresh MemberHealth (UP), no task
    no longer tracked                   task stopped; on_change(up=True) if it is still in the
                                        Spec and was DOWN (the engine takes it as up now)

Whether checks are enabled (``set_enabled``, haproxy's "disable/enable health") is
runtime state, kept per member of the Spec, tracked or not: it survives every reload
that keeps the member (a member whose pool gains a check later starts disabled if
the operator disabled it), and is forgotten with the member.

Passive checks: a worker that sees ``outlier.consecutive_errors`` connection errors
(or ``consecutive_5xx`` failures) in a row from a member calls ``report_passive``; the
member is DOWN at once, with a HANA result (haproxy's "health analyze" status). With
an active check it comes back after ``rise`` passes; without one, after
``outlier.ejection_time``. A report about a member already DOWN, with checks
disabled, or of a pool without ``outlier`` (a report in flight across a reload) is
ignored.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Awaitable, Callable, Iterator

from lbcore import spec as S
from lbcore.proxy._checks import CHECK_CODES, CheckResult, check_once
from lbcore.proxy._health_state import MemberHealth

__all__ = ["CHECK_CODES", "CheckResult", "HealthMonitor", "MemberHealth", "check_delays", "check_once"]

log = logging.getLogger("lbcore.health")

Key = tuple[str, str]  # (pool, member)
OnChange = Callable[[str, str, bool, CheckResult | None], None]
Check = Callable[[S.HealthCheck, str, int], Awaitable[CheckResult]]
Sleep = Callable[[float], Awaitable[None]]


def check_delays(hc: S.HealthCheck, rng: random.Random) -> Iterator[float]:
    """The waits before each check of one member: the first spread over the first
    interval, the others ``interval`` give or take ``jitter`` of it."""
    yield rng.uniform(0.0, hc.interval)
    while True:
        yield hc.interval * (1.0 + rng.uniform(-hc.jitter, hc.jitter))


class _Tracked:
    """One tracked member: its verdict, how and where it is checked, what runs for it."""

    __slots__ = ("pool", "member", "target", "check", "outlier", "health", "task", "timer")

    def __init__(self, pool: S.Pool, member: S.Member, health: MemberHealth) -> None:
        self.pool = pool.name
        self.member = member.name
        self.target = member.check_address
        self.check = pool.health
        self.outlier = pool.outlier
        self.health = health
        self.task: asyncio.Task[None] | None = None  # the check loop, while checks run
        self.timer: asyncio.TimerHandle | None = None  # the end of an ejection, without checks

    def __str__(self) -> str:
        return f"{self.pool}/{self.member}"


class HealthMonitor:
    """Checks every tracked member and says when one goes up or down.

    ``check``, ``sleep``, ``rng`` and ``clock`` are seams for tests: the probe, the
    wait between checks, the jitter's random source and the ``time.time`` that stamps
    passive results and state changes made here.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        on_change: OnChange,
        *,
        check: Check = check_once,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.loop = loop
        self.on_change = on_change
        self._check = check
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._clock = clock
        self._tracked: dict[Key, _Tracked] = {}
        self._present: frozenset[Key] = frozenset()  # every (pool, member) of the Spec
        self._disabled: set[Key] = set()  # members whose checks the operator disabled
        self._closed = False

    # -- configuration ------------------------------------------------------------------

    def apply(self, spec: S.Spec) -> None:
        """Track the members of ``spec`` (see the module's table for what is kept)."""
        if self._closed:
            raise RuntimeError("the health monitor is closed")
        present = frozenset((pool.name, member.name) for pool in spec.pools for member in pool.members)
        self._present = present
        self._disabled &= present
        wanted = {
            (pool.name, member.name): (pool, member)
            for pool in spec.pools
            if pool.health is not None or pool.outlier is not None
            for member in pool.members
        }
        for key in [key for key in self._tracked if key not in wanted]:
            entry = self._tracked.pop(key)
            self._stop(entry)
            if key in present and not entry.health.up:
                self._notify(entry, up=True)
        for key, (pool, member) in wanted.items():
            self._apply_member(key, pool, member)

    def _apply_member(self, key: Key, pool: S.Pool, member: S.Member) -> None:
        old = self._tracked.get(key)
        hc = pool.health
        if old is not None and old.target == member.check_address and old.check == hc:
            old.outlier = pool.outlier
            return
        rise, fall = (hc.rise, hc.fall) if hc is not None else (1, 1)
        if old is not None and old.target == member.check_address and hc is not None:
            health = old.health.rebased(rise, fall)
        else:
            health = MemberHealth(rise, fall, since=self._clock())
            if key in self._disabled:
                health.disable(self._clock())
        entry = _Tracked(pool, member, health)
        if old is not None:
            self._stop(old)
        self._tracked[key] = entry
        if old is not None and old.health.up != health.up:
            self._notify(entry)
        if health.enabled:
            self._start(entry)

    # -- runtime commands -----------------------------------------------------------------

    def states(self) -> dict[Key, MemberHealth]:
        """The verdict of every tracked member (live objects: read, do not change)."""
        return {key: entry.health for key, entry in self._tracked.items()}

    def set_enabled(self, pool: str, member: str, enabled: bool) -> None:
        """haproxy's "disable health" (checks stop, the member counts as UP) and
        "enable health" (checks start again from the current state). Kept for a
        member that is not tracked too; KeyError for a member not in the Spec."""
        key = (pool, member)
        if key not in self._present:
            raise KeyError(f"no member {pool}/{member}")
        if enabled:
            self._disabled.discard(key)
        else:
            self._disabled.add(key)
        entry = self._tracked.get(key)
        if entry is None or enabled == entry.health.enabled:
            return
        if enabled:
            entry.health.enable()
            self._start(entry)
            log.info("health: checks of %s enabled", entry)
        else:
            self._stop(entry)
            log.info("health: checks of %s disabled", entry)
            if entry.health.disable(self._clock()):
                self._notify(entry)

    def report_passive(self, pool: str, member: str, reason: str) -> None:
        """A worker saw the member fail ``outlier`` times in a row: DOWN now."""
        entry = self._tracked.get((pool, member))
        if entry is None or entry.outlier is None or not entry.health.enabled or not entry.health.up:
            log.debug("health: passive report about %s/%s ignored (%s)", pool, member, reason)
            return
        entry.health.eject(CheckResult(False, "HANA", None, 0.0, reason, self._clock()))
        self._notify(entry)
        if entry.check is None:
            ejection = entry.outlier.ejection_time
            entry.timer = self.loop.call_later(ejection, self._restore, entry, ejection)

    async def close(self) -> None:
        """Stop every check; the monitor takes no more ``apply``."""
        self._closed = True
        tasks = [entry.task for entry in self._tracked.values() if entry.task is not None]
        for entry in self._tracked.values():
            self._stop(entry)
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- internals ---------------------------------------------------------------------------

    def _start(self, entry: _Tracked) -> None:
        if entry.check is not None and entry.task is None:
            entry.task = self.loop.create_task(self._run(entry), name=f"health {entry}")

    def _stop(self, entry: _Tracked) -> None:
        if entry.task is not None:
            entry.task.cancel()
            entry.task = None
        if entry.timer is not None:
            entry.timer.cancel()
            entry.timer = None

    async def _run(self, entry: _Tracked) -> None:
        hc, target = entry.check, entry.target
        assert hc is not None
        for delay in check_delays(hc, self._rng):
            await self._sleep(delay)
            try:
                result = await self._check(hc, target.host, target.port)
            except Exception:  # a bug in a probe must not end the member's checks
                log.exception("health: the check of %s could not run", entry)
                continue
            if entry.health.record(result):
                self._notify(entry)

    def _restore(self, entry: _Tracked, ejection: float) -> None:
        entry.timer = None
        detail = f"ejection over after {S.format_duration(ejection)}"
        if entry.health.restore(CheckResult(True, "HANA", None, 0.0, detail, self._clock())):
            self._notify(entry)

    def _notify(self, entry: _Tracked, up: bool | None = None) -> None:
        up = entry.health.up if up is None else up
        last = entry.health.last
        if up:
            log.info("health: %s is UP%s", entry, _why(last))
        else:
            log.warning("health: %s is DOWN%s", entry, _why(last))
        try:
            self.on_change(entry.pool, entry.member, up, last)
        except Exception:
            log.exception("health: on_change failed for %s", entry)


def _why(result: CheckResult | None) -> str:
    if result is None:
        return ""
    return f" ({result.code}: {result.detail}, {result.duration * 1000:.0f}ms)"
