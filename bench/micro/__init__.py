"""Micro-benchmarks (pytest-benchmark) of hot code, pure twin beside compiled twin:
``python -m pytest -q bench/micro --benchmark-only``. No timing assertions."""
