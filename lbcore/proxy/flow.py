"""Flow control, admission and lazy deadlines: the small helpers every connection uses.

Flow control: a transport is paused for reading while *any* reason holds (the peer's
write buffer is full, a pipelined request waits its turn, a request body is buffered
while the backend connects). Pause and resume are idempotent per reason, so the
side that paused is the only one that can resume, and a transport never resumes
early because another reason went away.

Deadlines: resetting a timer on every read (cancel + call_later) costs two heap
operations per packet. Instead a connection moves ``deadline.expires`` (one float
store); when its armed time comes and the expiry has moved on, it is armed again for
the remaining time. A new expiry only needs re-arming when it comes before the time
the deadline is *armed* for (not before the last expiry asked for): a connection that
switches between a long idle timeout and a shorter request timeout re-arms about once
per timeout period, not on every request. And arming is not a loop timer: the
deadlines of a loop share one (``Timers``, a heap), so a connection's deadline costs
a place in a list, not a TimerHandle.

``suspend()`` is the lazy form of ``cancel()``: no expiry until the next ``extend``,
while the armed timer stays in place (when it goes off it finds nothing to do and
ends). A client connection suspends its deadline while a response is awaited, every
request; cancelling there cost two timer creations per request (re-armed for the
keep-alive timeout, then again for the next request's client timeout).
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Callable

from lbcore._fastpath.clock import Clock
from lbcore._fastpath.sockio import peer_name
from lbcore._fastpath.streams import Stream

__all__ = ["Admission", "ReadGate", "Deadline", "Timers", "direct_socket", "new_deadline", "new_read_gate",
           "timers_of", "transport_peer", "transport_socket", "untrack_transports", "writes_direct"]

_NEVER = float("inf")


def _nothing() -> None:
    """The callback of a closed Deadline."""


class Admission:
    """A worker's open client connections per listener, held to each listener's maxconn.

    A connection asks ``admit`` when it is made and calls ``release`` when it ends: two
    direct calls into this (compiled) object instead of methods of the interpreted
    Worker. ``maxconn`` is the worker's share per listener name, set by the worker on
    each revision; a refused connection counts as ``denied`` in the listener's
    counters. ``on_idle``, once set (a stopping worker), is called when the last
    connection is released, then cleared.
    """

    __slots__ = ("conns", "maxconn", "stats", "on_idle")

    def __init__(self, stats: object) -> None:
        self.conns: dict[str, set] = {}  # listener name -> open connections
        self.maxconn: dict[str, int] = {}
        self.stats = stats  # WorkerStats: listener(name).denied
        self.on_idle: Callable[[], None] | None = None

    def admit(self, listener: str, conn: object) -> bool:
        conns = self.conns.get(listener)
        if conns is None:
            conns = self.conns[listener] = set()
        if len(conns) >= self.maxconn.get(listener, 1 << 30):
            self.stats.listener(listener).denied += 1  # type: ignore[attr-defined]
            return False
        conns.add(conn)
        return True

    def release(self, listener: str, conn: object) -> None:
        conns = self.conns.get(listener)
        if conns is not None:
            conns.discard(conn)
        if self.on_idle is not None and not self.open():
            on_idle, self.on_idle = self.on_idle, None
            on_idle()

    def open(self) -> int:
        """Connections open on every listener."""
        return sum(len(conns) for conns in self.conns.values())

    def all(self) -> list:
        """Every open connection (a copy: shutting one down releases it)."""
        return [conn for conns in self.conns.values() for conn in conns]


class ReadGate:
    """Pauses a transport's reading while at least one reason is active."""

    __slots__ = ("transport", "reasons")

    def __init__(self, transport: asyncio.Transport | None = None) -> None:
        self.transport = transport
        self.reasons = 0  # bit set of reasons

    # Reasons (bits): why a side is not read.
    PEER_FULL = 1  # the other side's write buffer is above its high-water mark
    PIPELINE = 2  # a pipelined request waits for the previous response
    BUFFERED = 4  # body bytes buffered while the backend is not connected yet
    LIMIT = 8  # a listener or queue limit

    def pause(self, reason: int) -> None:
        was = self.reasons
        self.reasons = was | reason
        if not was and self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume(self, reason: int) -> None:
        was = self.reasons
        if not was & reason:
            return
        self.reasons = was & ~reason
        if not self.reasons and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def attach(self, transport: asyncio.Transport) -> None:
        """Bind the gate to a transport, applying a pause decided before it existed."""
        self.transport = transport
        if self.reasons:
            transport.pause_reading()


class Timers:
    """The Deadlines of one loop on one loop timer: a binary heap by the time each is armed for.

    ``loop.call_at`` costs a TimerHandle, a libuv timer and a copy of the context
    (uvloop: ~5,500 instructions under callgrind), and cancelling it as much again in
    callbacks; with a timer per connection that was ~7% of a connection's CPU when
    each request has a connection of its own. Here arming a deadline is a place in a
    heap (``Deadline.index``: O(log n), moved or removed in place), and the loop timer
    is re-armed only for an entry earlier than the time it goes off. When it fires,
    every deadline whose time has come leaves the heap and fires; it is then armed for
    the new first entry. A deadline cancelled or moved later does not touch the loop
    timer: if that timer then goes off with nothing due, it re-arms itself, once.
    """

    __slots__ = ("loop", "clock", "monotonic", "heap", "handle", "handle_at")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.clock = loop.time
        # The engine's clock instead of loop.time() when the loop keeps its time on
        # CLOCK_MONOTONIC (loop_time_is_monotonic): a C call, where uvloop's time() was a
        # Python call, ~550 instructions, on every extend (several a request). Times from
        # both then compare, as now() is never behind the loop's (cached) time: the loop
        # timer goes off when its time reaches an armed time, and now() has then too.
        self.monotonic = Clock() if loop_time_is_monotonic(loop) else None
        self.heap: list[Deadline] = []  # heap-ordered by .armed; each entry knows its .index
        self.handle: asyncio.TimerHandle | None = None
        self.handle_at = _NEVER  # when the loop timer goes off

    def now(self) -> float:
        """The loop's time (see ``monotonic``)."""
        monotonic = self.monotonic
        if monotonic is not None:
            return monotonic.now()
        return self.clock()

    def arm(self, deadline: Deadline) -> None:
        """``deadline.armed`` was set, earlier than before: take or move up its place."""
        heap = self.heap
        index = deadline.index
        if index < 0:
            index = len(heap)
            heap.append(deadline)
        self._up(index, deadline)
        if deadline.armed < self.handle_at:
            if self.handle is not None:
                self.handle.cancel()
            self.handle_at = deadline.armed
            self.handle = self.loop.call_at(deadline.armed, self._run)

    def disarm(self, deadline: Deadline) -> None:
        """Take ``deadline`` out of the heap (it is in it)."""
        heap = self.heap
        index = deadline.index
        deadline.index = -1
        last = heap.pop()
        if last is not deadline:
            # The last entry takes the freed place, then moves up or down to its own.
            if index > 0:
                parent = heap[(index - 1) >> 1]
                if last.armed < parent.armed:
                    self._up(index, last)
                    return
            self._down(index, last)

    def _up(self, index: int, deadline: Deadline) -> None:
        heap = self.heap
        armed = deadline.armed
        while index > 0:
            parent = (index - 1) >> 1
            above = heap[parent]
            if above.armed <= armed:
                break
            heap[index] = above
            above.index = index
            index = parent
        heap[index] = deadline
        deadline.index = index

    def _down(self, index: int, deadline: Deadline) -> None:
        heap = self.heap
        size = len(heap)
        armed = deadline.armed
        while True:
            child = 2 * index + 1
            if child >= size:
                break
            below = heap[child]
            right = child + 1
            if right < size:
                other = heap[right]
                if other.armed < below.armed:
                    child = right
                    below = other
            if armed <= below.armed:
                break
            heap[index] = below
            below.index = index
            index = child
        heap[index] = deadline
        deadline.index = index

    def _run(self) -> None:
        """The loop timer: fire what is due (within 1 ms), then re-arm for the rest."""
        self.handle = None
        # While running, arm() leaves the loop timer alone (nothing is earlier than -inf):
        # the deadlines fired here may arm again, and the end of the run arms the timer
        # once, for whatever is first then.
        self.handle_at = -_NEVER
        heap = self.heap
        try:
            due = self.now() + 0.001
            while heap:
                deadline = heap[0]
                if deadline.armed > due:
                    break
                self.disarm(deadline)
                try:
                    deadline._fire(due)
                except Exception as exc:  # one owner's failure must not stop the others' deadlines
                    self.loop.call_exception_handler(
                        {"message": "Deadline callback failed", "exception": exc, "deadline": deadline}
                    )
        finally:
            self.handle_at = _NEVER
            if heap:
                deadline = heap[0]
                self.handle_at = deadline.armed
                self.handle = self.loop.call_at(deadline.armed, self._run)


def loop_time_is_monotonic(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop.time()`` reads CLOCK_MONOTONIC, as the engine's ``Clock`` does:
    asyncio's own loops (``time.monotonic()``) and uvloop's (libuv's ``uv_now``, the
    monotonic clock in milliseconds as of the loop iteration's start, so it is never
    ahead of ``Clock.now()``). Any other loop (a test's stepped clock) keeps its own."""
    time_method = getattr(type(loop), "time", None)
    if time_method is asyncio.BaseEventLoop.time:
        return True
    module = getattr(type(loop), "__module__", "") or ""
    return module.startswith("uvloop")


# The Timers of each loop (a worker has one loop; tests make many).
_timers_by_loop: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_last: list = [None, None]  # [loop, its Timers]: the lookup a worker makes per Deadline


def timers_of(loop: asyncio.AbstractEventLoop) -> Timers:
    """The loop's Timers, made on first use."""
    last = _last
    if last[0] is loop:
        return last[1]
    timers = _timers_by_loop.get(loop)
    if timers is None:
        timers = _timers_by_loop[loop] = Timers(loop)
    last[0], last[1] = loop, timers
    return timers


class Deadline:
    """One lazily re-armed deadline: ``extend(seconds)`` is cheap, ``cancel()`` stops it.

    ``expires`` is when it is due; ``armed`` when its loop's ``Timers`` looks at it
    next (<= expires while it has a place there, ``index`` >= 0)."""

    __slots__ = ("timers", "callback", "expires", "armed", "index")

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        self._setup(loop, callback)

    def _setup(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        # (__init__'s body; new_deadline calls it without the type call.)
        self.timers = timers_of(loop)
        self.callback = callback
        self.expires = 0.0  # when the deadline is
        self.armed = 0.0  # when the Timers look at it (<= expires while index >= 0)
        self.index = -1  # its place in the Timers' heap; -1: none

    def extend(self, seconds: float) -> None:
        """Expire ``seconds`` from now (replacing any earlier or later expiry)."""
        now = self.timers.now()  # compiled, a C double (flow.pxd): the sum is not boxed
        expires = now + seconds
        self.expires = expires
        if self.index < 0 or expires < self.armed:
            # Not armed, or earlier than it is armed for: (re)arm; later is lazy.
            self.armed = expires
            self.timers.arm(self)

    def cancel(self) -> None:
        if self.index >= 0:
            self.timers.disarm(self)

    def close(self) -> None:
        """Stop for good: cancel, and let go of the owner's callback. A bound method of
        the owner held here keeps owner and deadline in a reference cycle that only
        the garbage collector would free; without it a closed connection is freed
        at once, by reference counting."""
        self.cancel()
        self.callback = _nothing

    def suspend(self) -> None:
        """No expiry until the next ``extend`` (which then costs no new timer if later)."""
        self.expires = _NEVER

    @property
    def active(self) -> bool:
        """Armed, with an expiry set (neither cancelled nor suspended)."""
        return self.index >= 0 and self.expires != _NEVER

    def _fire(self, due: float) -> None:
        """Its armed time came (it has left the heap): the callback, or armed again.
        ``due`` is the run's "now + 1 ms": the comparison the run makes, exactly, so an
        expiry it would take as due is never armed again for the same run (``a - b > c``
        and ``a > b + c`` can differ in floating point)."""
        if self.expires == _NEVER:  # suspended: the next extend arms it again
            return
        if self.expires > due:
            self.armed = self.expires
            self.timers.arm(self)
            return
        self.callback()


def new_read_gate() -> ReadGate:
    """``ReadGate()``, made without the type call: one per connection, and compiled, the
    call's argument parsing cost more than the gate's two fields."""
    gate = ReadGate.__new__(ReadGate)
    gate.transport = None
    gate.reasons = 0
    return gate


def new_deadline(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> Deadline:
    """``Deadline(loop, callback)``, made without the type call (one per connection)."""
    deadline = Deadline.__new__(Deadline)
    deadline._setup(loop, callback)
    return deadline


# -- uvloop's transport table ---------------------------------------------------------------
# uvloop (0.19 to 0.23, read in their sources) keeps every transport it makes in a
# weakref.WeakValueDictionary, keyed by file descriptor, for one purpose: add_reader()
# and add_writer() refuse a descriptor that a live transport uses. That table is pure
# Python: each accepted connection runs its __setitem__ and a KeyedRef's __new__ and
# __init__, and each closed one the weak reference's callback, ~7k instructions of a
# connection's ~124k in a worker under a connection per request (callgrind). The engine
# never adds a reader or writer on a transport's descriptor, so a worker turns the
# table into one that keeps nothing (untrack_transports). The loop's own check then
# never fires; everything else about the loop is unchanged.
UNTRACKED_UVLOOP_VERSIONS = ("0.19", "0.20", "0.21", "0.22", "0.23")


def _uvloop_version_read(uvloop) -> bool:
    """Whether this uvloop's version is one whose sources were read (UNTRACKED_UVLOOP_VERSIONS)."""
    return ".".join(uvloop.__version__.split(".")[:2]) in UNTRACKED_UVLOOP_VERSIONS


class _UntrackedTransports(weakref.WeakValueDictionary):
    """A WeakValueDictionary that keeps nothing set in it (see above)."""

    def __setitem__(self, key, value) -> None:
        pass


def untrack_transports(loop: asyncio.AbstractEventLoop) -> bool:
    """Make ``loop`` (a uvloop loop of a version in UNTRACKED_UVLOOP_VERSIONS) stop
    keeping its transports in its table; True when it was done. Any other loop, an
    unknown uvloop, or a table that is not found as expected, is left alone."""
    module = type(loop).__module__
    if not module.startswith("uvloop"):
        return False
    import gc

    import uvloop

    if not _uvloop_version_read(uvloop):
        return False
    tables = [o for o in gc.get_referents(loop) if type(o) is weakref.WeakValueDictionary]
    if len(tables) != 1:  # the loop holds exactly one: its transports
        return False
    table = tables[0]
    table.clear()  # transports made before (none in a worker at start-up) are forgotten too
    table.__class__ = _UntrackedTransports
    return True


# -- a transport's socket ----------------------------------------------------------------
# A uvloop TCP transport answers get_extra_info("socket") through its own override, which
# handles "sockname" and "peername" and passes every other name on with
# super().get_extra_info(): a super object, a lookup through the class's bases and a
# bound method, ~1.3k instructions, for what the base class's method then does with
# "socket" (its socket object, made once and cached). A connection asks for it once
# (a client's address, TCP_CORK at the end, writes: writes_direct): for the uvloop versions read
# (UNTRACKED_UVLOOP_VERSIONS) it calls the base class's method directly, which is what
# the override runs for that name; any other transport or version asks the transport.
def _uvloop_socket_getter():
    try:
        import uvloop
        from uvloop.loop import TCPTransport, UVBaseTransport
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return None, None
    if not _uvloop_version_read(uvloop):
        return None, None
    return TCPTransport, UVBaseTransport.get_extra_info


_UVLOOP_TCP, _uvloop_base_extra_info = _uvloop_socket_getter()


def transport_socket(transport) -> object:
    """``transport.get_extra_info("socket")``, the same object, at less cost for uvloop's TCP
    transports (see above); for lbcore's own (``streams.Stream``), the stream itself: it
    has the ``fileno()`` that ``sockio.cork`` calls (a socket view is a Python object made
    per connection, ~1.2k instructions), and ``transport_peer`` reads its address."""
    if type(transport) is _UVLOOP_TCP:
        return _uvloop_base_extra_info(transport, "socket")
    if type(transport) is Stream:
        return transport
    return transport.get_extra_info("socket")


def transport_peer(transport, sock) -> object:
    """The client's address as ``getpeername()`` gives it (None: unknown). A stream's is
    the one its accept gave; otherwise it is read from ``sock`` (``transport_socket``'s,
    by ``sockio.peer_name``: uvloop's cached peername is formatted with ``snprintf`` on
    every call), or asked of the transport when there is no socket (TLS in memory, a
    test's transport) or it lost its peer since the accept."""
    if type(transport) is Stream:
        peer = transport.peername
        return transport.get_extra_info("peername") if peer is None else peer
    peer = peer_name(sock) if sock is not None else None
    return transport.get_extra_info("peername") if peer is None else peer


def direct_socket(transport) -> object:
    """``transport``'s socket when a connection may write to it directly (``writes_direct``),
    else None: for lbcore's TLS layer (``TlsServer(direct_socket=...)``), which writes its
    ciphertext below the engine's protocol."""
    return transport_socket(transport) if writes_direct(transport) else None


def writes_direct(transport) -> bool:
    """Whether a connection may write straight to ``transport``'s socket while the
    transport holds nothing unsent (``sockio.send_now``): a uvloop TCP transport (the
    versions read), whose write would otherwise buffer the bytes, queue the transport
    and write them at the end of the loop's iteration, ~2k instructions. Never a TLS
    transport (its socket carries records, not these bytes) nor any other."""
    return type(transport) is _UVLOOP_TCP  # never when _UVLOOP_TCP is None: no type is None
