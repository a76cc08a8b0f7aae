"""The worker's malloc settings: keep freed memory rather than hand it back and fault it in again.

Each read from a socket becomes a bytes object of up to 256 KiB (uvloop reads that
much at a time), freed once written on. With glibc's defaults, a few of those freed
together leave enough free space at the top of the heap for ``free`` to give it back
to the kernel (``brk``), and the next reads take it back page by page: a page fault
and a zeroed page per 4 KiB. Streaming 1 MiB responses, that was about 150 µs of
kernel time per response, and six ``brk`` calls (``python -m bench --perf big``).

So a worker raises glibc's trim threshold (free memory at the top of the heap that
``free`` keeps) to ``TRIM_THRESHOLD`` and fixes the mmap threshold at
``MMAP_THRESHOLD`` (setting one turns off glibc's adaptive thresholds, which would
otherwise leave 256 KiB blocks to mmap/munmap, each a fresh set of page faults).
The cost: a worker keeps up to ``TRIM_THRESHOLD`` of freed heap it would otherwise
return. An operator's own ``MALLOC_TRIM_THRESHOLD_``/``MALLOC_MMAP_THRESHOLD_`` or
``GLIBC_TUNABLES=glibc.malloc.*`` settings are left alone, and so is any malloc
that is not glibc's (no ``mallopt``, or one that refuses).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "tune_malloc"]

# glibc's <malloc.h> option numbers.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

# Blocks below this come from the heap; 4 MiB is well above any read or TLS buffer.
MMAP_THRESHOLD = 4 << 20
# Free memory at the heap's top kept for the next reads: over a hundred 256 KiB
# reads' worth (glibc's adaptive trim threshold goes up to 64 MiB by itself).
TRIM_THRESHOLD = 32 << 20

_OPERATOR_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")


def tune_malloc(environ: Mapping[str, str] = os.environ) -> str:
    """Apply the settings to this process; says what was done (for the worker's log)."""
    if any(name in environ for name in _OPERATOR_SETTINGS) or "glibc.malloc." in environ.get("GLIBC_TUNABLES", ""):
        return "malloc: the environment's settings"
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return "malloc: no mallopt (not glibc), defaults kept"
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success, 0 on error.
    if mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1 or mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) != 1:
        return "malloc: mallopt refused, defaults kept"
    return f"malloc: mmap threshold {MMAP_THRESHOLD >> 20} MiB, trim threshold {TRIM_THRESHOLD >> 20} MiB"
