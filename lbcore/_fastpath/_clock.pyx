# cython: language_level=3
"""The engine's monotonic clock: the compiled twin of ``_clock_py`` (read it there).

``now()`` reads CLOCK_MONOTONIC with ``clock_gettime`` and converts it as CPython's
``time.monotonic()`` does (``_PyTime_AsSecondsDouble``): the nanoseconds as an integer,
divided exactly when they are whole seconds, else as a double divided by 1e9. So a
value from here and one from ``time.monotonic()`` compare as if from one function.

While held (``hold``/``release``, or ``hold_now``/``release_now`` from the compiled
streams' poller, one hold per epoll wake-up), ``now()`` answers the time read when the
outermost hold began.
"""

from cpython.exc cimport PyErr_SetFromErrno
from posix.time cimport CLOCK_MONOTONIC, CLOCK_REALTIME, clock_gettime, timespec

__all__ = ["IMPLEMENTATION", "Clock", "hold", "release"]

IMPLEMENTATION = "compiled"

cdef double _held = 0.0  # the time read when the outermost hold began
cdef int _holds = 0  # holds not yet released


cdef double _read() except? -1.0:
    return _seconds(CLOCK_MONOTONIC)


cdef double _seconds(int clock) except? -1.0:
    cdef timespec ts
    cdef long long ns
    if clock_gettime(clock, &ts) != 0:
        PyErr_SetFromErrno(OSError)
        return -1.0
    ns = <long long>ts.tv_sec * 1000000000 + ts.tv_nsec
    if ns % 1000000000 == 0:
        return <double>(ns // 1000000000)
    return <double>ns / 1e9


cdef int hold_now() except -1:
    global _held, _holds
    if _holds == 0:
        _held = _read()
    _holds += 1
    return 0


cdef void release_now() noexcept:
    global _holds
    if _holds > 0:
        _holds -= 1


def hold():
    """From now until the matching ``release()``, ``now()`` answers one time (nests)."""
    hold_now()


def release():
    """End the innermost hold (a release without a hold does nothing)."""
    release_now()


cdef class Clock:
    """The monotonic clock: ``now()`` in seconds."""

    cpdef double now(self) except? -1.0:
        if _holds:
            return _held
        return _read()

    cpdef double wall(self) except? -1.0:
        """``time.time()``: CLOCK_REALTIME, converted as CPython converts it; never held."""
        return _seconds(CLOCK_REALTIME)
