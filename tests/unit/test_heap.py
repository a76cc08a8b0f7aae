"""The worker's malloc settings (lbcore.proxy.heap): freed read buffers stay in the
heap instead of going back to the kernel and faulting in again on the next reads."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lbcore.proxy.heap import tune_malloc

# Six 256 KiB reads in flight, then all freed (written on), a hundred times over:
# the minor page faults of those hundred cycles, after one to warm up.
_CYCLES = """
import resource, sys
from lbcore.proxy.heap import tune_malloc
if sys.argv[1] == "tuned":
    assert tune_malloc({}).startswith("malloc: mmap threshold"), tune_malloc({})
def cycle():
    blocks = [b"x" * (256 << 10) for _ in range(6)]
    del blocks
cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(100):
    cycle()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", _CYCLES, mode], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def test_freed_read_buffers_are_reused_without_page_faults() -> None:
    # glibc's defaults give the freed blocks back and fault them in again: ~64 faults
    # per 256 KiB block; tuned, the heap keeps them.
    assert _faults("default") > 10_000
    assert _faults("tuned") < 100


@pytest.mark.parametrize("environ", [
    {"MALLOC_TRIM_THRESHOLD_": "131072"},
    {"MALLOC_MMAP_THRESHOLD_": "131072"},
    {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"},
])
def test_the_operators_own_malloc_settings_are_left_alone(environ) -> None:
    assert tune_malloc(environ) == "malloc: the environment's settings"
