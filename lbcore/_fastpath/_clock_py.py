"""The engine's monotonic clock: the pure twin of ``_clock`` (the reference).

``Clock().now()`` is ``time.monotonic()``: seconds as a float, from CLOCK_MONOTONIC.
``Clock().wall()`` is ``time.time()`` (CLOCK_REALTIME, never held): the access log's
timestamp of a request, read once per request; compiled, a C call and no float object.

Why a class for one call: the request path reads the clock several times a request
(when a head began to arrive, when the exchange started, when the head went to the
member, the response's first byte and its end). Compiled, ``Clock.now`` is a C method
(``_clock.pyx``) and the engine holds its clock in a typed field
(``WorkerContext.clock``), so each read is a C call returning a C double: no Python
call to ``time.monotonic`` and no float object, ~150 instructions less a read. The
compiled twin computes the value as ``time.monotonic()`` does (the same clock, the
same conversion from nanoseconds), so the two can be mixed.

One time per wake-up: between ``hold()`` and its ``release()`` (they nest), ``now()``
answers the time read when the outermost hold began. The streams hold the clock while
they dispatch what one wake-up found ready (the compiled poller for each epoll batch,
the pure twin for each callback), so the several reads of a request's handling in that
batch (deadlines extended, the log's times) cost one ``clock_gettime``: haproxy, too,
reads the date once per poll. Every time read in a batch is then the batch's start, at
most the batch's own duration behind (a timeout armed then fires that much early); the
loop's time, taken when its poll returned, is never ahead of it.
"""

from __future__ import annotations

import time

__all__ = ["IMPLEMENTATION", "Clock", "hold", "release"]

IMPLEMENTATION = "pure"


_held = 0.0  # the time read when the outermost hold began
_holds = 0  # holds not yet released


def hold() -> None:
    """From now until the matching ``release()``, ``now()`` answers one time (nests)."""
    global _held, _holds
    if _holds == 0:
        _held = time.monotonic()
    _holds += 1


def release() -> None:
    """End the innermost hold (a release without a hold does nothing)."""
    global _holds
    if _holds > 0:
        _holds -= 1


class Clock:
    """The monotonic clock: ``now()`` in seconds."""

    __slots__ = ()

    def now(self) -> float:
        if _holds:
            return _held
        return time.monotonic()

    def wall(self) -> float:
        return time.time()
