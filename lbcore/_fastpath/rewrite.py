"""Header rewriting between client and member: picks the twin that serves.

``request_head_for_member`` and ``response_head_for_client`` (the rules are in
``lbcore.l7.rewrite``, which re-exports them) have two twins with one interface:
``_rewrite`` (Cython: rewrite, field checks and latin-1 encoding in one pass) and
``_rewrite_py`` (the reference: builds the field list, then ``encode_*_head``).
``HeadWriter`` has both as methods with positional arguments, for the compiled
exchange (C methods in the compiled twin; the response's framing left in the writer).
The compiled one is used when built unless ``LBCORE_NO_EXTENSIONS=1``.
"""

from __future__ import annotations

from lbcore._fastpath import twins, _rewrite_py

__all__ = ["HeadWriter", "IMPLEMENTATION", "IMPLEMENTATIONS", "request_head_for_member", "response_head_for_client"]

IMPLEMENTATIONS, _impl = twins(_rewrite_py, "_rewrite")
IMPLEMENTATION: str = _impl.IMPLEMENTATION
request_head_for_member = _impl.request_head_for_member
response_head_for_client = _impl.response_head_for_client
HeadWriter = _impl.HeadWriter
