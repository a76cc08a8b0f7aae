"""HealthMonitor with a fake probe and a fake sleep that the test steps: scheduling and
jitter, rise/fall, reloads, disable/enable health, passive ejection. No sockets, no
wall-clock waits (except one ejection timer, awaited on an event)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import defaultdict
from typing import Any, Awaitable, Callable

import pytest

from lbcore.proxy.health import CheckResult, HealthMonitor, check_delays
from lbcore.spec import HealthCheck, parse_spec

CLOCK = 1000.0


def make_spec(pools: list[dict[str, Any]]) -> Any:
    return parse_spec({"pools": pools})


def pool(name: str = "www", members: int = 2, health: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": name,
        "members": [{"name": f"w{i + 1}", "address": f"127.0.0.1:{9001 + i}"} for i in range(members)],
        **extra,
    }
    if health is not None:
        data["health"] = {"type": "http", "interval": "2s", "rise": 2, "fall": 3, **health}
    return data


class Rig:
    """The monitor under test with a fake probe (results set per port) and a fake sleep
    that parks each member's task until the test steps it."""

    def __init__(self, seed: int = 7) -> None:
        self.loop = asyncio.get_running_loop()
        self.results: dict[int, bool] = {}
        self.raise_for: set[int] = set()
        self.probes: list[tuple[str, int, str]] = []
        self.delays: dict[str, list[float]] = defaultdict(list)
        self.cancelled: dict[str, int] = defaultdict(int)
        self.sleeping: dict[str, asyncio.Event] = {}
        self.changes: list[tuple[str, str, bool, str | None]] = []
        self.changed = asyncio.Event()
        self.activity = asyncio.Event()  # set whenever a task parks or is cancelled
        self.monitor = HealthMonitor(self.loop, self.on_change, check=self.check, sleep=self.sleep,
                                     rng=random.Random(seed), clock=lambda: CLOCK)

    def on_change(self, pool: str, member: str, up: bool, last: CheckResult | None) -> None:
        self.changes.append((pool, member, up, last.code if last else None))
        self.changed.set()

    async def check(self, hc: HealthCheck, host: str, port: int) -> CheckResult:
        self.probes.append((host, port, hc.type))
        if port in self.raise_for:
            raise RuntimeError("probe bug")
        ok = self.results.get(port, True)
        return CheckResult(ok, "L7OK" if ok else "L4CON", 200 if ok else None, 0.0, "", CLOCK)

    async def sleep(self, delay: float) -> None:
        name = asyncio.current_task().get_name().removeprefix("health ")  # type: ignore[union-attr]
        self.delays[name].append(delay)
        gate = asyncio.Event()
        self.sleeping[name] = gate
        self.activity.set()
        try:
            await gate.wait()
        except asyncio.CancelledError:
            self.cancelled[name] += 1
            if self.sleeping.get(name) is gate:
                del self.sleeping[name]
            self.activity.set()
            raise

    async def until(self, predicate: Callable[[], bool]) -> None:
        """Until ``predicate()`` holds, rechecked whenever a task parks or is cancelled."""
        while not predicate():
            self.activity.clear()
            await asyncio.wait_for(self.activity.wait(), 5)

    async def parked(self, name: str) -> None:
        """Until ``name``'s task waits in sleep."""
        await self.until(lambda: name in self.sleeping)

    async def stopped(self, counts: dict[str, int]) -> None:
        """Until the tasks named have been cancelled that many times in all."""
        await self.until(lambda: all(self.cancelled[name] >= count for name, count in counts.items()))

    async def step(self, name: str, count: int = 1) -> None:
        """Let ``name`` run ``count`` checks; returns when it waits again."""
        for _ in range(count):
            await self.parked(name)
            self.sleeping.pop(name).set()
            await self.parked(name)

    def health(self, name: str) -> Any:
        pool_name, member = name.split("/")
        return self.monitor.states()[(pool_name, member)]


def run(scenario: Callable[[Rig], Awaitable[None]]) -> None:
    async def main() -> None:
        rig = Rig()
        try:
            await scenario(rig)
        finally:
            await rig.monitor.close()

    asyncio.run(main())


# -- scheduling --------------------------------------------------------------------------------------


def test_check_delays_first_spread_then_jittered() -> None:
    hc = HealthCheck("tcp", interval=2.0, jitter=0.25)
    rng = random.Random(3)
    firsts = [next(check_delays(hc, rng)) for _ in range(200)]
    assert all(0 <= d < 2.0 for d in firsts)
    assert min(firsts) < 0.2 and max(firsts) > 1.8  # spread over the whole first interval
    delays = check_delays(hc, random.Random(3))
    next(delays)
    later = [next(delays) for _ in range(200)]
    assert all(1.5 <= d <= 2.5 for d in later) and len(set(later)) == 200
    steady = check_delays(HealthCheck("tcp", interval=2.0, jitter=0.0), random.Random(3))
    next(steady)
    assert [next(steady) for _ in range(3)] == [2.0, 2.0, 2.0]


def test_first_checks_are_spread_over_the_first_interval() -> None:
    async def scenario(rig: Rig) -> None:
        rig.monitor.apply(make_spec([pool(members=12, health={"interval": "2s", "jitter": 0.1})]))
        names = [f"www/w{i + 1}" for i in range(12)]
        for name in names:
            await rig.parked(name)
        assert rig.probes == []  # nothing checked before its first wait
        firsts = sorted(rig.delays[name][0] for name in names)
        expected = random.Random(7)
        assert firsts == sorted(expected.uniform(0, 2.0) for _ in range(12))  # the injected source, in order
        assert len(set(firsts)) == 12 and firsts[-1] - firsts[0] > 1.0
        for name in names[:3]:
            await rig.step(name, 3)
            assert all(1.8 <= d <= 2.2 for d in rig.delays[name][1:]) and len(rig.delays[name]) == 4
        assert len(rig.probes) == 9 and {port for _, port, _ in rig.probes} == {9001, 9002, 9003}

    run(scenario)


# -- rise and fall ------------------------------------------------------------------------------------


def test_down_after_fall_and_up_after_rise() -> None:
    async def scenario(rig: Rig) -> None:
        rig.monitor.apply(make_spec([pool(health={"rise": 2, "fall": 3})]))
        await rig.step("www/w1", 2)
        assert rig.changes == []
        rig.results[9001] = False
        await rig.step("www/w1", 2)
        assert rig.changes == []
        await rig.step("www/w1")
        assert rig.changes == [("www", "w1", False, "L4CON")]
        assert rig.health("www/w1").consecutive_fail == 3
        rig.results[9001] = True
        await rig.step("www/w1")
        assert len(rig.changes) == 1
        await rig.step("www/w1")
        assert rig.changes[-1] == ("www", "w1", True, "L7OK") and rig.health("www/w1").since == CLOCK
        assert rig.health("www/w2").up and rig.health("www/w2").consecutive_ok == 0  # never stepped

    run(scenario)


def test_check_goes_to_the_monitor_address_or_port() -> None:
    async def scenario(rig: Rig) -> None:
        data = pool(health={"type": "tcp"}, members=3)
        data["members"][0]["monitor_port"] = 8001
        data["members"][1]["monitor_address"] = "127.0.0.2:8002"
        rig.monitor.apply(make_spec([data]))
        for name in ("www/w1", "www/w2", "www/w3"):
            await rig.step(name)
        assert rig.probes == [("127.0.0.1", 8001, "tcp"), ("127.0.0.2", 8002, "tcp"), ("127.0.0.1", 9003, "tcp")]

    run(scenario)


def test_a_probe_that_raises_is_logged_and_checks_go_on(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(rig: Rig) -> None:
        rig.raise_for.add(9001)
        rig.monitor.apply(make_spec([pool(health={})]))
        with caplog.at_level(logging.ERROR, "lbcore.health"):
            await rig.step("www/w1", 2)
        assert "the check of www/w1 could not run" in caplog.text
        assert rig.health("www/w1").last is None and rig.health("www/w1").up

    run(scenario)


def test_on_change_that_raises_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(rig: Rig) -> None:
        def broken(*args: Any) -> None:
            raise RuntimeError("boom")

        rig.monitor.on_change = broken
        rig.results[9001] = False
        rig.monitor.apply(make_spec([pool(health={"fall": 1})]))
        with caplog.at_level(logging.ERROR, "lbcore.health"):
            await rig.step("www/w1", 2)
        assert "on_change failed for www/w1" in caplog.text
        assert not rig.health("www/w1").up

    run(scenario)


# -- reloads -------------------------------------------------------------------------------------------


def test_apply_keeps_unchanged_members_and_restarts_changed_ones() -> None:
    async def scenario(rig: Rig) -> None:
        rig.monitor.apply(make_spec([pool(members=3, health={"fall": 1})]))
        rig.results[9001] = rig.results[9002] = False
        await rig.step("www/w1")
        await rig.step("www/w2")
        await rig.parked("www/w3")
        assert rig.changes == [("www", "w1", False, "L4CON"), ("www", "w2", False, "L4CON")]
        before = rig.monitor.states()

        # The same Spec again: nothing restarts, every state object is kept.
        rig.monitor.apply(make_spec([pool(members=3, health={"fall": 1})]))
        after = rig.monitor.states()
        assert all(after[key] is before[key] for key in before) and sum(rig.cancelled.values()) == 0
        assert len(rig.changes) == 2

        # w2 moves to another address: a new server, fresh and UP; w1 and w3 untouched.
        data = pool(members=3, health={"fall": 1})
        data["members"][1]["address"] = "127.0.0.1:9102"
        rig.monitor.apply(make_spec([data]))
        assert rig.changes[-1] == ("www", "w2", True, None)
        await rig.stopped({"www/w2": 1})
        assert rig.cancelled == {"www/w2": 1}
        assert rig.monitor.states()[("www", "w1")] is before[("www", "w1")]
        await rig.step("www/w2")
        assert rig.probes[-1] == ("127.0.0.1", 9102, "http") and rig.health("www/w2").up

        # New check parameters: every task restarts, the verdicts are kept.
        data["health"]["interval"] = "3s"
        data["health"]["rise"] = 1
        rig.monitor.apply(make_spec([data]))
        await rig.stopped({"www/w1": 1, "www/w2": 2, "www/w3": 1})
        assert rig.cancelled == {"www/w1": 1, "www/w2": 2, "www/w3": 1}
        assert not rig.health("www/w1").up and rig.health("www/w1").rise == 1
        assert rig.health("www/w1") is not before[("www", "w1")] and len(rig.changes) == 3
        await rig.parked("www/w1")
        assert rig.delays["www/w1"][-1] < 3.0  # a first wait again, over the new interval
        rig.results[9001] = True
        await rig.step("www/w1")
        assert rig.changes[-1] == ("www", "w1", True, "L7OK")

        # w3 removed: its task stops, no callback. A new w4 starts UP, no callback.
        data["members"][2] = {"name": "w4", "address": "127.0.0.1:9004"}
        rig.monitor.apply(make_spec([data]))
        await rig.stopped({"www/w3": 2})
        assert ("www", "w3") not in rig.monitor.states()
        assert rig.monitor.states()[("www", "w4")].up and len(rig.changes) == 4

    run(scenario)


def test_monitor_port_change_is_an_address_change() -> None:
    async def scenario(rig: Rig) -> None:
        data = pool(members=1, health={"fall": 1})
        rig.monitor.apply(make_spec([data]))
        await rig.parked("www/w1")
        first = rig.health("www/w1")
        data["members"][0]["monitor_port"] = 9999
        rig.monitor.apply(make_spec([data]))
        await rig.stopped({"www/w1": 1})
        assert rig.health("www/w1") is not first and rig.cancelled == {"www/w1": 1}
        await rig.step("www/w1")
        assert rig.probes == [("127.0.0.1", 9999, "http")]

    run(scenario)


def test_pool_losing_its_check_brings_down_members_back() -> None:
    async def scenario(rig: Rig) -> None:
        rig.results[9001] = False
        rig.monitor.apply(make_spec([pool(health={"fall": 1}), pool("api", members=1, health={"fall": 1})]))
        await rig.step("www/w1")
        await rig.step("api/w1")
        assert {change[:3] for change in rig.changes} == {("www", "w1", False), ("api", "w1", False)}
        # www keeps its members but loses its check; api goes away entirely.
        rig.monitor.apply(make_spec([pool()]))
        assert rig.changes[-1] == ("www", "w1", True, "L4CON") and len(rig.changes) == 3
        assert rig.monitor.states() == {}
        await rig.stopped({"www/w1": 1, "www/w2": 1, "api/w1": 1})
        assert rig.cancelled == {"www/w1": 1, "www/w2": 1, "api/w1": 1}

    run(scenario)


def test_apply_after_close_is_refused() -> None:
    async def scenario(rig: Rig) -> None:
        rig.monitor.apply(make_spec([pool(health={})]))
        await rig.parked("www/w1")
        await rig.parked("www/w2")
        await rig.monitor.close()
        assert rig.cancelled == {"www/w1": 1, "www/w2": 1}
        with pytest.raises(RuntimeError, match="closed"):
            rig.monitor.apply(make_spec([pool(health={})]))

    run(scenario)


# -- disable / enable health ---------------------------------------------------------------------------


def test_set_enabled() -> None:
    async def scenario(rig: Rig) -> None:
        spec = make_spec([pool(health={"fall": 2}, outlier={})])
        rig.monitor.apply(spec)
        rig.results[9001] = False
        await rig.step("www/w1", 2)
        assert rig.changes == [("www", "w1", False, "L4CON")]

        rig.monitor.set_enabled("www", "w1", False)  # checks stop, the member counts as UP
        assert rig.changes[-1] == ("www", "w1", True, "L4CON")
        await rig.stopped({"www/w1": 1})
        assert rig.cancelled == {"www/w1": 1} and "www/w1" not in rig.sleeping
        assert not rig.health("www/w1").enabled
        rig.monitor.set_enabled("www", "w1", False)
        rig.monitor.report_passive("www", "w1", "5 connection errors in a row")  # ignored while disabled
        assert len(rig.changes) == 2

        spec2 = make_spec([pool(health={"fall": 2, "interval": "5s"}, outlier={})])
        rig.monitor.apply(spec2)  # a reload keeps the runtime state
        assert not rig.health("www/w1").enabled and "www/w1" not in rig.sleeping

        rig.monitor.set_enabled("www", "w1", True)  # from the current state (UP): fall failures again
        assert rig.health("www/w1").enabled and rig.health("www/w1").up
        await rig.step("www/w1")
        assert len(rig.changes) == 2
        await rig.step("www/w1")
        assert rig.changes[-1] == ("www", "w1", False, "L4CON")

        with pytest.raises(KeyError, match="no member www/nope"):
            rig.monitor.set_enabled("www", "nope", False)

    run(scenario)


def test_disabled_health_is_kept_for_unchecked_members_and_forgotten_with_them() -> None:
    async def scenario(rig: Rig) -> None:
        rig.monitor.apply(make_spec([pool(members=2)]))
        rig.monitor.set_enabled("www", "w1", False)  # not checked yet: remembered all the same
        assert rig.monitor.states() == {}
        rig.monitor.apply(make_spec([pool(members=2, health={})]))
        assert not rig.health("www/w1").enabled and rig.health("www/w1").up
        await rig.parked("www/w2")
        assert "www/w1" not in rig.delays  # no task for a disabled member
        rig.monitor.apply(make_spec([pool(members=0, health={})]))
        rig.monitor.apply(make_spec([pool(members=2, health={})]))  # w1 removed and added again
        assert rig.health("www/w1").enabled
        await rig.parked("www/w1")
        assert rig.changes == []

    run(scenario)


# -- passive ejection ---------------------------------------------------------------------------------------


def test_report_passive_with_active_checks() -> None:
    async def scenario(rig: Rig) -> None:
        rig.monitor.apply(make_spec([pool(health={"rise": 2}, outlier={"ejection_time": "1h"})]))
        await rig.parked("www/w1")
        rig.monitor.report_passive("www", "w1", "5 connection errors in a row")
        assert rig.changes == [("www", "w1", False, "HANA")]
        last = rig.health("www/w1").last
        assert last is not None and (last.ok, last.detail, last.at) == (False, "5 connection errors in a row", CLOCK)
        rig.monitor.report_passive("www", "w1", "again")  # already down
        assert len(rig.changes) == 1
        await rig.step("www/w1")
        assert len(rig.changes) == 1
        await rig.step("www/w1")  # rise passes bring it back, not the ejection time
        assert rig.changes[-1] == ("www", "w1", True, "L7OK")

    run(scenario)


def test_report_passive_without_active_checks() -> None:
    async def scenario(rig: Rig) -> None:
        rig.monitor.apply(make_spec([pool(outlier={"consecutive_errors": 3, "ejection_time": "20ms"})]))
        assert set(rig.monitor.states()) == {("www", "w1"), ("www", "w2")} and rig.delays == {}
        rig.changed.clear()
        rig.monitor.report_passive("www", "w1", "3 connection errors in a row")
        assert rig.changes == [("www", "w1", False, "HANA")]
        rig.changed.clear()
        await asyncio.wait_for(rig.changed.wait(), 5)  # the ejection time is over
        assert rig.changes[-1] == ("www", "w1", True, "HANA")
        assert rig.health("www/w1").last.detail == "ejection over after 20ms"  # type: ignore[union-attr]
        assert rig.probes == [] and rig.delays == {}

        # Disabling health during an ejection ends it at once, and for good.
        rig.monitor.report_passive("www", "w2", "3 connection errors in a row")
        rig.monitor.set_enabled("www", "w2", False)
        assert rig.changes[-2:] == [("www", "w2", False, "HANA"), ("www", "w2", True, "HANA")]

    run(scenario)


def test_reports_that_do_not_apply_are_ignored() -> None:
    async def scenario(rig: Rig) -> None:
        rig.monitor.apply(make_spec([pool(health={}), pool("plain")]))
        rig.monitor.report_passive("www", "w1", "no outlier on this pool")
        rig.monitor.report_passive("plain", "w1", "not tracked")
        rig.monitor.report_passive("gone", "w9", "not in the spec")
        assert rig.changes == [] and ("plain", "w1") not in rig.monitor.states()

    run(scenario)


def test_check_added_to_an_outlier_pool_takes_over_the_ejection() -> None:
    async def scenario(rig: Rig) -> None:
        data = pool(members=1, outlier={"ejection_time": "1h"})
        rig.monitor.apply(make_spec([data]))
        rig.monitor.report_passive("www", "w1", "errors")
        data["health"] = {"type": "tcp", "rise": 1}
        rig.monitor.apply(make_spec([data]))  # the 1h timer is gone; the check decides
        assert not rig.health("www/w1").up
        await rig.step("www/w1")
        assert rig.changes == [("www", "w1", False, "HANA"), ("www", "w1", True, "L7OK")]

    run(scenario)
