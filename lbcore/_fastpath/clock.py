"""The engine's monotonic clock: picks the twin that serves (see ``_clock_py``).

``_clock`` (Cython: ``Clock.now`` a C method over ``clock_gettime``) and ``_clock_py``
(pure: ``time.monotonic()``, the reference) have one interface and one behaviour; the
compiled one is used when built unless ``LBCORE_NO_EXTENSIONS=1``.
"""

from __future__ import annotations

from lbcore._fastpath import _clock_py, twins

__all__ = ["IMPLEMENTATION", "IMPLEMENTATIONS", "Clock", "hold", "release"]

IMPLEMENTATIONS, _impl = twins(_clock_py, "_clock")
IMPLEMENTATION: str = _impl.IMPLEMENTATION
Clock = _impl.Clock
hold = _impl.hold
release = _impl.release
