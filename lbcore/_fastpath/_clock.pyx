# cython: language_level=3
"""The engine's monotonic clock: the compiled twin of ``_clock_py`` (read it there).

``now()`` reads CLOCK_MONOTONIC with ``clock_gettime`` and converts it as CPython's
``time.monotonic()`` does (``_PyTime_AsSecondsDouble``): the nanoseconds as an integer,
divided exactly when they are whole seconds, else as a double divided by 1e9. So a
value from here and one from ``time.monotonic()`` compare as if from one function.
"""

from cpython.exc cimport PyErr_SetFromErrno
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

__all__ = ["IMPLEMENTATION", "Clock"]

IMPLEMENTATION = "compiled"


cdef class Clock:
    """The monotonic clock: ``now()`` in seconds."""

    cpdef double now(self) except? -1.0:
        cdef timespec ts
        cdef long long ns
        if clock_gettime(CLOCK_MONOTONIC, &ts) != 0:
            PyErr_SetFromErrno(OSError)
            return -1.0
        ns = <long long>ts.tv_sec * 1000000000 + ts.tv_nsec
        if ns % 1000000000 == 0:
            return <double>(ns // 1000000000)
        return <double>ns / 1e9
