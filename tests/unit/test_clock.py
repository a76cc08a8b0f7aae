"""lbcore._fastpath.clock: both twins read the clock time.monotonic() reads, and give the
same value for the same instant (the compiled one converts nanoseconds as CPython does)."""

from __future__ import annotations

import time

import pytest

from lbcore._fastpath import clock

TWINS = sorted(clock.IMPLEMENTATIONS)


def assert_reads_as(read, reference) -> None:
    """Each value of ``read()`` is a float between two of ``reference()`` around it."""
    for _ in range(1000):
        before = reference()
        value = read()
        after = reference()
        assert type(value) is float
        assert before <= value <= after


@pytest.mark.parametrize("name", TWINS)
def test_now_is_time_monotonic(name):
    assert_reads_as(clock.IMPLEMENTATIONS[name].Clock().now, time.monotonic)


@pytest.mark.parametrize("name", TWINS)
def test_wall_is_time_time_and_is_never_held(name):
    impl = clock.IMPLEMENTATIONS[name]
    impl.hold()  # holds the monotonic time only
    try:
        assert_reads_as(impl.Clock().wall, time.time)
    finally:
        impl.release()


@pytest.mark.parametrize("name", TWINS)
def test_now_never_goes_back(name):
    now = clock.IMPLEMENTATIONS[name].Clock().now
    values = [now() for _ in range(10_000)]
    assert values == sorted(values)


def test_the_twins_convert_alike():
    # Read in turns, the two twins' values interleave in order: a compiled value is never
    # ahead of a pure one read after it, nor behind one read before it.
    clocks = [clock.IMPLEMENTATIONS[name].Clock() for name in TWINS]
    values = [c.now() for _ in range(5_000) for c in clocks]
    assert values == sorted(values)


def test_the_engine_reads_the_selected_clock():
    from lbcore.proxy.http import WorkerContext

    context = WorkerContext(None, None, None, None, None)
    assert type(context.clock) is clock.Clock


@pytest.mark.parametrize("name", TWINS)
def test_a_held_clock_answers_the_time_the_outermost_hold_began(name):
    twin = clock.IMPLEMENTATIONS[name]
    now = twin.Clock().now
    before = time.monotonic()
    twin.hold()
    try:
        held = now()
        assert before <= held <= time.monotonic()
        while time.monotonic() <= held:
            pass  # until the real clock has moved on
        assert now() == held
        twin.hold()  # nested: the outer hold's time
        assert now() == held
        twin.release()
        assert now() == held
    finally:
        twin.release()
    assert now() > held  # released: the clock again
    twin.release()  # a release without a hold does nothing
    assert now() > held
