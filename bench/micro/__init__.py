"""Micro-benchmarks (pytest-benchmark) of hot code, pure twin beside compiled twin:
``python -m pytest -q bench/micro --benchmark-only``. No timing assertions."""

from __future__ import annotations

import os
from types import ModuleType

import pytest

__all__ = ["twin"]


def twin(selector: ModuleType, name: str) -> ModuleType:
    """The ``name`` twin ("pure" or "compiled") of a ``lbcore._fastpath`` selector module.

    A compiled twin that is not there skips the benchmark, and fails it under CI,
    where the build must have made it."""
    module = selector.IMPLEMENTATIONS.get(name)
    if module is None:
        message = f"{selector.__name__}: no {name} twin (pip install -e . builds the compiled ones)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return module
