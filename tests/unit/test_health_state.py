"""MemberHealth: rise/fall, passive ejection, disable/enable, against haproxy's counter."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lbcore.proxy.health import CheckResult, MemberHealth

def result(ok: bool, at: float = 0.0) -> CheckResult:
    if ok:
        return CheckResult(True, "L7OK", 200, 0.001, "HTTP 200", at)
    return CheckResult(False, "L4CON", None, 0.001, "connection refused", at)


def feed(health: MemberHealth, pattern: str) -> list[bool]:
    """'+' a pass, '-' a failure; returns what record() said each time."""
    return [health.record(result(ch == "+", at=float(i))) for i, ch in enumerate(pattern)]


def test_down_after_fall_failures_in_a_row() -> None:
    health = MemberHealth(rise=2, fall=3, since=0.0)
    assert health.up and health.enabled and health.last is None
    assert feed(health, "--+--") == [False] * 5  # a pass breaks the run
    assert health.up and health.consecutive_fail == 2
    assert health.record(result(False, at=42.0)) is True
    assert not health.up and health.since == 42.0 and health.last is not None and health.last.code == "L4CON"
    assert (health.consecutive_ok, health.consecutive_fail) == (0, 3)
    assert feed(health, "---") == [False] * 3  # already down: nothing changes
    assert health.consecutive_fail == 6


def test_up_after_rise_passes_in_a_row() -> None:
    health = MemberHealth(rise=3, fall=1, up=False, since=0.0)
    assert feed(health, "++-++") == [False] * 5
    assert health.consecutive_ok == 2
    assert health.record(result(True, at=7.0)) is True
    assert health.up and health.since == 7.0
    assert health.record(result(False, at=8.0)) is True  # fall=1: one failure is enough
    assert not health.up


def test_rise_and_fall_of_one() -> None:
    health = MemberHealth(1, 1)
    assert feed(health, "-+-+") == [True, True, True, True]


def test_eject_and_restore() -> None:
    health = MemberHealth(rise=2, fall=3, since=0.0)
    hana = CheckResult(False, "HANA", None, 0.0, "5 connection errors in a row", 10.0)
    assert health.eject(hana) is True
    assert not health.up and health.last is hana and health.since == 10.0
    assert health.eject(hana) is False  # already down
    assert feed(health, "+") == [False]
    assert feed(health, "+") == [True]  # rise passes bring it back
    assert health.eject(hana) is True
    back = CheckResult(True, "HANA", None, 0.0, "ejection over after 30s", 40.0)
    assert health.restore(back) is True and health.up and health.since == 40.0
    assert health.restore(back) is False


def test_disable_counts_as_up_and_ignores_results() -> None:
    health = MemberHealth(rise=2, fall=2, since=0.0)
    feed(health, "--")
    assert not health.up
    assert health.disable(at=5.0) is True
    assert health.up and not health.enabled and health.since == 5.0
    last = health.last
    assert feed(health, "----") == [False] * 4 and health.up and health.last is last
    assert health.eject(result(False)) is False and health.up
    assert health.disable() is False  # already up
    health.enable()
    assert health.enabled and health.up and (health.consecutive_ok, health.consecutive_fail) == (0, 0)
    assert feed(health, "--") == [False, True]  # from the current state: fall failures again


def test_restore_ignored_while_disabled() -> None:
    health = MemberHealth(1, 1)
    health.eject(result(False))
    health.disable(at=1.0)
    assert health.restore(result(True)) is False and health.up


def test_rebased_keeps_the_verdict() -> None:
    health = MemberHealth(rise=2, fall=2, since=0.0)
    feed(health, "--+")
    health.disable(at=3.0)
    health.enable()
    feed(health, "--")
    assert not health.up
    other = health.rebased(5, 1)
    assert (other.rise, other.fall, other.up, other.since, other.last) == (5, 1, False, health.since, health.last)
    assert other.enabled and (other.consecutive_ok, other.consecutive_fail) == (0, 0)
    health.disable()
    assert not health.rebased(1, 1).enabled


@pytest.mark.parametrize(("rise", "fall"), [(0, 1), (1, 0), (-1, 3)])
def test_thresholds_checked(rise: int, fall: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        MemberHealth(rise, fall)


def test_to_dict_and_repr() -> None:
    health = MemberHealth(2, 3, since=1.5)
    health.record(result(False, at=2.0))
    data = health.to_dict()
    assert data == {"up": True, "enabled": True, "since": 1.5, "rise": 2, "fall": 3, "consecutive_ok": 0,
                    "consecutive_fail": 1, "last": {"ok": False, "code": "L4CON", "status": None, "duration": 0.001,
                                                    "detail": "connection refused", "at": 2.0}}
    assert repr(health) == "MemberHealth(UP, rise=2, fall=3, ok=0, fail=1, last=L4CON)"
    health.disable()
    assert "checks disabled" in repr(health)


# -- against haproxy's counter ----------------------------------------------------------------------


class HaproxyCounter:
    """haproxy's check "health" (src/check.c set_server_check_status): 0 .. rise+fall-1,
    the server is UP from ``rise`` on; a pass while UP and a failure while DOWN snap it
    to the end. Passive mark-down (on-error mark-down) sets it to 0."""

    def __init__(self, rise: int, fall: int, up: bool) -> None:
        self.rise, self.fall = rise, fall
        self.full = rise + fall - 1
        self.health = self.full if up else 0
        self.enabled = True

    @property
    def up(self) -> bool:
        return not self.enabled or self.health >= self.rise

    def apply(self, event: str) -> None:
        if event == "disable":
            self.enabled, self.health = False, self.full
        elif event == "enable":
            self.enabled = True
        elif not self.enabled:
            return
        elif event == "pass" and self.health < self.full:
            self.health += 1
            if self.health >= self.rise:
                self.health = self.full
        elif event == "fail" and self.health > 0:
            self.health -= 1
            if self.health < self.rise:
                self.health = 0
        elif event == "eject":
            self.health = 0
        elif event == "restore" and self.health < self.rise:
            self.health = self.full


EVENTS = st.sampled_from(["pass", "fail"] * 6 + ["eject", "restore", "disable", "enable"])


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.booleans(), st.lists(EVENTS, max_size=80))
def test_matches_haproxy_counter(rise: int, fall: int, up: bool, events: list[str]) -> None:
    health = MemberHealth(rise, fall, up, since=-1.0)
    model = HaproxyCounter(rise, fall, up)
    recorded: list[bool] = []  # pass/fail results, in order
    for step, event in enumerate(events):
        before = health.up
        at = float(step)
        if event in ("pass", "fail"):
            changed = health.record(result(event == "pass", at))
            if health.enabled:
                recorded.append(event == "pass")
        elif event == "eject":
            changed = health.eject(CheckResult(False, "HANA", None, 0.0, "errors", at))
            if health.enabled:
                recorded.append(False)
        elif event == "restore":
            changed = health.restore(CheckResult(True, "HANA", None, 0.0, "over", at))
        elif event == "disable":
            changed = health.disable(at)
        else:
            health.enable()
            changed = False
        model.apply(event)
        assert health.up == model.up, (event, step)
        assert changed == (before != health.up)
        if changed:
            assert health.since == at
        if health.enabled and health.up:
            assert health.consecutive_fail == model.full - model.health
        elif health.enabled:
            assert health.consecutive_ok == model.health
        if changed and event == "fail":  # DOWN only after `fall` failures in a row
            assert recorded[-fall:] == [False] * fall
        if changed and event == "pass":  # UP only after `rise` passes in a row
            assert recorded[-rise:] == [True] * rise
