"""The health verdict of one member (sans-IO): rise and fall over check results,
passive ejection, and haproxy's "disable health".

Theory of operation
-------------------
A member is UP or DOWN. Each active check result extends a run of passes or a run of
failures (a result of the other kind starts a new run). An UP member goes DOWN when
its run of failures reaches ``fall``; a DOWN member goes UP when its run of passes
reaches ``rise``. That is haproxy's check "health" counter (0 .. rise+fall-1, UP from
``rise`` on) said another way; the unit tests run the two side by side.

    state        event                          next
    UP           failure, fall in a row         DOWN
    UP           eject (a worker's report)      DOWN   rise passes in a row to come back
    DOWN         pass, rise in a row            UP
    DOWN         restore (ejection time over)   UP
    enabled      disable                        UP and not enabled: results do not count
    not enabled  enable                         enabled; runs restart from the current state

A new member starts UP, as haproxy's default ``init-state up``: it takes traffic at
once and ``fall`` failures take it out. Every change of ``up`` sets ``since``.
"""

from __future__ import annotations

import time
from typing import Any

from lbcore.proxy._checks import CheckResult

__all__ = ["MemberHealth"]


class MemberHealth:
    """Rise/fall state of one member. ``record``, ``eject`` and ``restore`` return
    True when ``up`` changed; the caller tells the workers."""

    __slots__ = ("rise", "fall", "up", "enabled", "last", "since", "consecutive_ok", "consecutive_fail")

    def __init__(self, rise: int, fall: int, up: bool = True, *, since: float | None = None) -> None:
        if rise < 1 or fall < 1:
            raise ValueError(f"rise and fall must be at least 1 (got rise={rise}, fall={fall})")
        self.rise = rise
        self.fall = fall
        self.up = up
        self.enabled = True
        self.last: CheckResult | None = None  # the last result that counted (active or passive)
        self.since = time.time() if since is None else since  # time.time() of the last up/down change
        self.consecutive_ok = 0
        self.consecutive_fail = 0

    def record(self, result: CheckResult) -> bool:
        """One active check result. Ignored (False) while checks are disabled."""
        if not self.enabled:
            return False
        self.last = result
        if result.ok:
            self.consecutive_ok += 1
            self.consecutive_fail = 0
            if not self.up and self.consecutive_ok >= self.rise:
                return self._change(True, result.at)
        else:
            self.consecutive_fail += 1
            self.consecutive_ok = 0
            if self.up and self.consecutive_fail >= self.fall:
                return self._change(False, result.at)
        return False

    def eject(self, result: CheckResult) -> bool:
        """A passive failure: DOWN now; active checks need ``rise`` passes to bring it
        back. Ignored while disabled."""
        if not self.enabled:
            return False
        self.last = result
        self.consecutive_ok = 0
        self.consecutive_fail += 1
        return self._change(False, result.at) if self.up else False

    def restore(self, result: CheckResult) -> bool:
        """UP now (a passive ejection's time is over, with no active check to decide)."""
        if not self.enabled or self.up:
            return False
        self.last = result
        self.consecutive_ok = self.consecutive_fail = 0
        return self._change(True, result.at)

    def disable(self, at: float | None = None) -> bool:
        """Stop judging: the member counts as UP until ``enable``."""
        self.enabled = False
        self.consecutive_ok = self.consecutive_fail = 0
        return False if self.up else self._change(True, time.time() if at is None else at)

    def enable(self) -> None:
        """Judge again, from the current state: runs start over (no-op when enabled)."""
        if self.enabled:
            return
        self.enabled = True
        self.consecutive_ok = self.consecutive_fail = 0

    def rebased(self, rise: int, fall: int) -> "MemberHealth":
        """The same verdict under new thresholds (the pool's check changed): ``up``,
        ``enabled``, ``last`` and ``since`` kept, runs started over."""
        other = MemberHealth(rise, fall, self.up, since=self.since)
        other.enabled = self.enabled
        other.last = self.last
        return other

    def _change(self, up: bool, at: float) -> bool:
        self.up = up
        self.since = at
        return True

    def to_dict(self) -> dict[str, Any]:
        return {
            "up": self.up,
            "enabled": self.enabled,
            "since": self.since,
            "rise": self.rise,
            "fall": self.fall,
            "consecutive_ok": self.consecutive_ok,
            "consecutive_fail": self.consecutive_fail,
            "last": self.last.to_dict() if self.last else None,
        }

    def __repr__(self) -> str:
        state = ("UP" if self.up else "DOWN") + ("" if self.enabled else " (checks disabled)")
        return (f"MemberHealth({state}, rise={self.rise}, fall={self.fall}, ok={self.consecutive_ok}, "
                f"fail={self.consecutive_fail}, last={self.last.code if self.last else None})")
