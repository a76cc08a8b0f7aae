"""lbcore.proxy.flow: the lazy Deadline, the Timers they share, and the ReadGate, on a loop the test steps."""

from __future__ import annotations

import heapq
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lbcore.proxy.flow import Admission, Deadline, ReadGate, timers_of, untrack_transports


class Handle:
    def __init__(self, when: float, callback) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class SteppedLoop:
    """time() and call_at() on a clock that only ``advance`` moves."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[tuple[float, int, Handle]] = []
        self.armed = 0  # call_at calls: the cost a lazy deadline avoids
        self._seq = itertools.count()
        self.errors: list[dict] = []

    def call_exception_handler(self, context: dict) -> None:
        self.errors.append(context)

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback) -> Handle:
        self.armed += 1
        handle = Handle(when, callback)
        heapq.heappush(self.timers, (when, next(self._seq), handle))
        return handle

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while self.timers and self.timers[0][0] <= end:
            when, _, handle = heapq.heappop(self.timers)
            if handle.cancelled:
                continue
            self.now = max(self.now, when)
            handle.callback()
        self.now = end


def deadline():
    loop = SteppedLoop()
    fired: list[float] = []
    return loop, Deadline(loop, lambda: fired.append(loop.now)), fired


def test_fires_once_at_the_expiry():
    loop, d, fired = deadline()
    d.extend(10)
    loop.advance(9.9)
    assert fired == []
    loop.advance(1)
    assert fired == [10]
    assert not d.active
    loop.advance(100)
    assert fired == [10]


def test_a_later_expiry_needs_no_new_timer_and_still_fires_at_the_end():
    loop, d, fired = deadline()
    d.extend(10)
    for _ in range(100):
        loop.advance(0.05)
        d.extend(10)  # activity: the deadline moves on
    assert loop.armed == 1
    loop.advance(9.99)
    assert fired == []  # the timer went off at 10, saw time left, re-armed
    loop.advance(0.02)
    assert len(fired) == 1 and abs(fired[0] - 15.0) < 1e-6


def test_an_earlier_expiry_fires_early():
    loop, d, fired = deadline()
    d.extend(60)
    loop.advance(1)
    d.extend(5)
    loop.advance(5)
    assert fired == [6.0]


@pytest.mark.parametrize("short, suspend", [(10, False), (30, True)])
def test_switching_between_long_and_short_timeouts_does_not_arm_a_timer_each_time(short, suspend):
    # keep-alive (60 s) between requests, a shorter one (request 10 s, client 30 s)
    # while one is read, and (a client connection) suspended while the member answers:
    # the timer stays armed for the short one; extending to the long one is lazy.
    loop, d, fired = deadline()
    for _ in range(1000):
        d.extend(short)
        if suspend:
            d.suspend()
        loop.advance(0.001)
        d.extend(60)
        loop.advance(0.001)
    assert loop.armed <= 2
    assert fired == []
    loop.advance(59.9)
    assert fired == []
    loop.advance(0.2)
    assert len(fired) == 1 and abs(fired[0] - (2.0 + 60)) < 0.01


def test_cancel_stops_it_and_extend_starts_it_again():
    loop, d, fired = deadline()
    d.extend(1)
    d.cancel()
    loop.advance(5)
    assert fired == [] and not d.active
    d.extend(1)
    loop.advance(1)
    assert fired == [6.0]


def test_suspend_stops_the_expiry_and_extend_needs_no_new_timer():
    loop, d, fired = deadline()
    d.extend(10)
    d.suspend()
    assert not d.active
    loop.advance(30)  # the armed timer went off and found nothing to do
    assert fired == []
    d.extend(10)
    loop.advance(10)
    assert fired == [40.0]


def test_suspended_while_a_later_timer_runs_then_an_earlier_expiry_fires_on_time():
    loop, d, fired = deadline()
    d.extend(60)
    d.suspend()
    loop.advance(1)
    d.extend(5)
    loop.advance(5)
    assert fired == [6.0]


def test_close_cancels_and_never_calls_the_owner_again():
    loop, d, fired = deadline()
    d.extend(1)
    d.close()
    loop.advance(5)
    d.extend(1)  # a late extend (a callback racing the close) arms a harmless timer
    loop.advance(5)
    assert fired == []


# -- many deadlines on one loop: the Timers heap ------------------------------------------


def check_heap(loop: SteppedLoop) -> None:
    """Every armed deadline knows its place, and each is armed no earlier than its parent."""
    heap = timers_of(loop).heap
    for i, d in enumerate(heap):
        assert d.index == i
        assert i == 0 or heap[(i - 1) // 2].armed <= d.armed


def test_many_deadlines_share_one_loop_timer():
    loop = SteppedLoop()
    fired: list[int] = []
    deadlines = [Deadline(loop, lambda k=k: fired.append(k)) for k in range(200)]
    for k, d in enumerate(deadlines):
        loop.advance(0.01)
        d.extend(10.0)  # each later than the first: no new loop timer
    assert loop.armed == 1
    for d in deadlines[::2]:
        d.cancel()  # leaves the heap; the loop timer is left alone
    check_heap(loop)
    assert loop.armed == 1
    loop.advance(20)
    assert fired == list(range(1, 200, 2))
    assert timers_of(loop).heap == []


def test_a_failing_callback_does_not_stop_the_other_deadlines():
    loop = SteppedLoop()
    fired: list[str] = []

    def fail() -> None:
        raise RuntimeError("owner broke")

    first, second = Deadline(loop, fail), Deadline(loop, lambda: fired.append("second"))
    first.extend(1)
    second.extend(1)
    loop.advance(2)
    assert fired == ["second"]
    assert [type(e["exception"]) for e in loop.errors] == [RuntimeError]


def test_an_expiry_within_the_run_s_millisecond_fires_instead_of_arming_again():
    # 6.517 - 6.516 > 0.001 but 6.517 <= 6.516 + 0.001 in floating point: a deadline
    # that asked the first question re-armed itself for a time the run took as due,
    # and the run never ended (found by the test below).
    loop = SteppedLoop()
    fired: list[float] = []
    d = Deadline(loop, lambda: fired.append(loop.now))
    d.extend(6.516)
    d.extend(6.517)  # later: lazy, still armed for 6.516
    loop.advance(10)
    assert fired == [6.516]


operations = st.lists(
    st.tuples(
        st.sampled_from(["extend", "extend", "extend", "cancel", "suspend", "advance"]),
        st.integers(0, 5),  # which deadline
        st.floats(0.0, 5.0, allow_nan=False).map(lambda x: round(x, 3)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(operations)
def test_deadlines_fire_when_due_whatever_the_order_of_operations(ops):
    # Model: each deadline is due at its last extend, unless cancelled or suspended
    # since; advancing the clock past that time fires it once, at that time.
    loop = SteppedLoop()
    fired: list[tuple[int, float]] = []
    deadlines = [Deadline(loop, lambda k=k: fired.append((k, loop.now))) for k in range(6)]
    due: dict[int, float] = {}
    expected: list[tuple[int, float]] = []
    for op, k, seconds in ops:
        if op == "extend":
            deadlines[k].extend(seconds)
            due[k] = loop.now + seconds
        elif op == "cancel":
            deadlines[k].cancel()
            due.pop(k, None)
        elif op == "suspend":
            deadlines[k].suspend()
            due.pop(k, None)
        else:
            end = loop.now + seconds
            expected += sorted(((k, t) for k, t in due.items() if t <= end), key=lambda kt: kt[1])
            due = {k: t for k, t in due.items() if t > end}
            loop.advance(seconds)
        check_heap(loop)
    end = loop.now + 100
    expected += sorted(((k, t) for k, t in due.items()), key=lambda kt: kt[1])
    loop.advance(100)
    assert loop.now == end
    # Each deadline fires once per expiry, within the 1 ms the timers allow; all of
    # them in the order of their times.
    for k in range(len(deadlines)):
        got = [at for j, at in fired if j == k]
        want = [at for j, at in expected if j == k]
        assert len(got) == len(want)
        assert all(w - 0.001 <= g <= w + 1e-9 for g, w in zip(got, want))
    times = [at for _, at in fired]
    assert all(b >= a - 0.001 for a, b in zip(times, times[1:]))


# -- admission -----------------------------------------------------------------------------


class Counters:
    def __init__(self) -> None:
        self.denied = 0


class Stats:
    def __init__(self) -> None:
        self.by_name: dict[str, Counters] = {}

    def listener(self, name: str) -> Counters:
        return self.by_name.setdefault(name, Counters())


def test_admission_holds_each_listener_to_its_maxconn_and_counts_the_denied():
    stats = Stats()
    admission = Admission(stats)
    admission.maxconn = {"web": 2}
    a, b, c, d = object(), object(), object(), object()
    assert admission.admit("web", a) and admission.admit("web", b)
    assert not admission.admit("web", c)
    assert admission.admit("other", d)  # no maxconn share: unlimited
    assert stats.listener("web").denied == 1 and stats.listener("other").denied == 0
    assert admission.open() == 3 and set(admission.all()) == {a, b, d}
    admission.release("web", a)
    admission.release("web", c)  # never admitted: nothing to release
    assert admission.admit("web", c) and admission.open() == 3


def test_admission_calls_on_idle_once_when_the_last_connection_goes():
    admission = Admission(Stats())
    a, b = object(), object()
    admission.admit("web", a)
    admission.admit("tcp", b)
    idle: list[int] = []
    admission.on_idle = lambda: idle.append(admission.open())
    admission.release("web", a)
    assert idle == []
    admission.release("tcp", b)
    assert idle == [0] and admission.on_idle is None
    admission.admit("web", a)
    admission.release("web", a)
    assert idle == [0]


class Transport:
    def __init__(self) -> None:
        self.reading = True
        self.calls = 0

    def pause_reading(self) -> None:
        self.calls += 1
        self.reading = False

    def resume_reading(self) -> None:
        self.calls += 1
        self.reading = True

    def is_closing(self) -> bool:
        return False


def test_read_gate_resumes_only_when_every_reason_is_gone():
    t = Transport()
    gate = ReadGate(t)
    gate.pause(ReadGate.PEER_FULL)
    gate.pause(ReadGate.PIPELINE)
    gate.pause(ReadGate.PIPELINE)  # idempotent
    assert not t.reading and t.calls == 1
    gate.resume(ReadGate.PIPELINE)
    assert not t.reading
    gate.resume(ReadGate.BUFFERED)  # a reason that was not set changes nothing
    assert not t.reading
    gate.resume(ReadGate.PEER_FULL)
    assert t.reading and t.calls == 2


def test_read_gate_applies_a_pause_decided_before_the_transport():
    gate = ReadGate()
    gate.pause(ReadGate.BUFFERED)
    t = Transport()
    gate.attach(t)
    assert not t.reading


def _transport_table(loop):
    import gc
    import weakref

    return [o for o in gc.get_referents(loop) if isinstance(o, weakref.WeakValueDictionary)]


def test_an_untracked_uvloop_keeps_no_transport_and_still_serves():
    import asyncio

    import uvloop

    loop = uvloop.new_event_loop()
    try:
        assert untrack_transports(loop) is True
        (table,) = _transport_table(loop)

        class Echo(asyncio.Protocol):
            def connection_made(self, transport):
                self.transport = transport

            def data_received(self, data):
                self.transport.write(data.upper())

        async def exchange() -> tuple[bytes, int]:
            server = await loop.create_server(Echo, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"ping")
            answer = await reader.readexactly(4)
            # Both transports (accepted and connected) are open now, and neither is kept.
            kept = len(table)
            writer.close()
            await writer.wait_closed()
            server.close()
            await server.wait_closed()
            return answer, kept

        answer, kept = loop.run_until_complete(exchange())
        assert answer == b"PING"
        assert kept == 0
    finally:
        loop.close()


def test_a_tracked_uvloop_keeps_its_transports_which_is_what_untracking_removes():
    import asyncio
    import socket

    import uvloop

    loop = uvloop.new_event_loop()
    try:
        (table,) = _transport_table(loop)
        a, b = socket.socketpair()

        async def connect():
            return await loop.create_connection(asyncio.Protocol, sock=a)

        transport, _ = loop.run_until_complete(connect())
        assert len(table) == 1  # the loop's own bookkeeping, as uvloop ships it
        transport.close()
        b.close()
    finally:
        loop.close()


def test_untracking_leaves_other_loops_alone():
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        assert untrack_transports(loop) is False
    finally:
        loop.close()


def _accepted_transports(loop) -> tuple[object, object]:
    """(the transport of a connection accepted on 127.0.0.1, the client's socket) on ``loop``."""
    import asyncio
    import socket

    made = loop.create_future()

    class Keep(asyncio.Protocol):
        def connection_made(self, transport):
            made.set_result(transport)

    async def accept():
        server = await loop.create_server(Keep, "127.0.0.1", 0)
        client = socket.create_connection(server.sockets[0].getsockname())
        transport = await asyncio.wait_for(made, 30)
        server.close()
        return transport, client

    return loop.run_until_complete(accept())


@pytest.mark.parametrize("kind", ["uvloop", "asyncio"])
def test_transport_socket_is_the_transports_own_socket_object(kind: str):
    import asyncio

    import uvloop

    from lbcore._fastpath import sockio
    from lbcore.proxy.flow import transport_socket

    loop = uvloop.new_event_loop() if kind == "uvloop" else asyncio.new_event_loop()
    try:
        transport, client = _accepted_transports(loop)
        with client:
            sock = transport_socket(transport)
            # The very object the transport gives (uvloop: the base class's method, which
            # is what its TCP transport's override runs for this name).
            assert sock is transport.get_extra_info("socket") and sock is not None
            assert sock.fileno() >= 0
            assert sockio.peer_name(sock) == transport.get_extra_info("peername") == client.getsockname()
            transport.close()
    finally:
        loop.close()


def test_transport_socket_asks_any_other_transport():
    from lbcore.proxy.flow import transport_socket

    class Other:
        def get_extra_info(self, name, default=None):
            return {"socket": "its socket"}.get(name, default)

    assert transport_socket(Other()) == "its socket"


# -- the clock the Timers read ---------------------------------------------------------------


def test_a_stepped_loop_keeps_its_own_clock():
    loop = SteppedLoop()
    loop.advance(42.0)
    timers = timers_of(loop)
    assert timers.monotonic is None
    assert timers.now() == 42.0


@pytest.mark.parametrize("kind", ["uvloop", "asyncio"])
def test_a_real_loop_is_read_on_the_engines_clock_never_behind_the_loop(kind):
    import asyncio

    import uvloop

    from lbcore.proxy.flow import loop_time_is_monotonic

    loop = uvloop.new_event_loop() if kind == "uvloop" else asyncio.new_event_loop()
    try:
        assert loop_time_is_monotonic(loop)
        timers = timers_of(loop)
        assert timers.monotonic is not None

        async def compare() -> list[tuple[float, float]]:
            pairs = []
            for _ in range(50):
                await asyncio.sleep(0)
                pairs.append((loop.time(), timers.now()))
            return pairs

        for loop_time, now in loop.run_until_complete(compare()):
            assert loop_time <= now < loop_time + 1.0
    finally:
        loop.close()


@pytest.mark.parametrize("kind", ["uvloop", "asyncio"])
def test_a_deadline_on_a_real_loop_fires_after_its_expiry(kind):
    import asyncio

    import uvloop

    loop = uvloop.new_event_loop() if kind == "uvloop" else asyncio.new_event_loop()
    try:
        fired = loop.create_future()
        d = Deadline(loop, lambda: fired.set_result(timers_of(loop).now()))
        start = timers_of(loop).now()
        d.extend(0.02)
        at = loop.run_until_complete(asyncio.wait_for(fired, 10))
        assert at >= start + 0.02 - 0.001  # a run fires what is due within 1 ms (Timers._run)
        assert not d.active
    finally:
        loop.close()
