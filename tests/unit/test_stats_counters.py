"""lbcore.proxy.stats: the per-worker counters a request updates, and the supervisor's sums."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from lbcore.proxy.stats import LATENCY_BUCKETS, RESPONSE_CLASSES, Aggregate, MemberCounters


def bucket_by_scan(seconds: float) -> int:
    """The histogram's definition: the first bucket whose upper bound holds ``seconds``."""
    for i, bound in enumerate(LATENCY_BUCKETS):
        if seconds <= bound:
            return i
    return len(LATENCY_BUCKETS)  # +Inf


@given(st.one_of(st.sampled_from(LATENCY_BUCKETS), st.floats(0, 20, allow_nan=False)))
def test_a_latency_lands_in_the_first_bucket_that_holds_it(seconds) -> None:
    counters = MemberCounters()
    counters.observe(seconds)
    expected = [0] * (len(LATENCY_BUCKETS) + 1)
    expected[bucket_by_scan(seconds)] = 1
    assert list(counters.latency) == expected
    assert counters.latency_sum_us == int(seconds * 1_000_000)


def test_a_duration_that_is_not_a_finite_number_adds_nothing_to_the_sum() -> None:
    counters = MemberCounters()
    counters.observe(0.25)
    for odd in (float("nan"), float("inf"), float("-inf")):
        counters.observe(odd)
    assert counters.latency_sum_us == 250_000
    assert sum(counters.latency) == 4  # each still counted in a bucket


def test_bounds_are_inclusive_and_past_the_last_is_infinity() -> None:
    counters = MemberCounters()
    counters.observe(0.001)
    counters.observe(0.0010001)
    counters.observe(10.0)
    counters.observe(11.0)
    assert counters.latency[0] == 1 and counters.latency[1] == 1
    assert counters.latency[-2] == 1 and counters.latency[-1] == 1
    taken = counters.take()
    assert sum(taken["latency"]) == 4 and not any(counters.latency)


@given(st.integers(min_value=-2000, max_value=2000))
def test_a_response_counts_in_its_status_class(status) -> None:
    counters = MemberCounters()
    counters.response(status)
    expected = [0] * len(RESPONSE_CLASSES)
    expected[RESPONSE_CLASSES.index(f"{status // 100}xx") if 100 <= status < 600 else -1] = 1
    assert list(counters.responses) == expected



def test_the_aggregate_keeps_each_workers_share_of_a_listener() -> None:
    aggregate = Aggregate()
    aggregate.add(0, {"listeners": {"web": {"conns_total": 3, "conns_cur": 2}}})
    aggregate.add(1, {"listeners": {"web": {"conns_total": 5, "conns_cur": 5}, "api": {"conns_total": 1, "conns_cur": 0}}})
    aggregate.add(0, {"listeners": {"web": {"conns_total": 4, "conns_cur": 1}}})  # deltas add, gauges replace
    assert aggregate.worker_rows("web", 2) == [{"worker": 0, "conns_cur": 1, "conns_total": 7},
                                               {"worker": 1, "conns_cur": 5, "conns_total": 5}]
    # A worker that died has no connections open; what it accepted still counts, and
    # its successor at that index goes on from there.
    aggregate.forget_worker(1)
    assert aggregate.worker_rows("web", 2)[1] == {"worker": 1, "conns_cur": 0, "conns_total": 5}
    # Counted with the workers running now (1 of 2), it is still there.
    assert aggregate.worker_rows("web", 1)[1] == {"worker": 1, "conns_cur": 0, "conns_total": 5}
    aggregate.add(1, {"listeners": {"web": {"conns_total": 2, "conns_cur": 2}}})
    assert aggregate.worker_rows("web", 2)[1] == {"worker": 1, "conns_cur": 2, "conns_total": 7}
    assert aggregate.worker_rows("api", 3) == [{"worker": 0, "conns_cur": 0, "conns_total": 0},
                                               {"worker": 1, "conns_cur": 0, "conns_total": 1},
                                               {"worker": 2, "conns_cur": 0, "conns_total": 0}]
    assert aggregate.listener_row("web")["conns_total"] == 14
