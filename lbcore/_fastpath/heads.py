"""The readers' fast lane: simple HTTP/1.1 heads recognised without llhttp.

- ``scan_request(data, pos, max_request_line, max_header_bytes, max_headers)``
- ``scan_response(data, pos, method, max_header_bytes, max_headers)``
- ``scan_response_event(...)``: the same scan, as ``(Response, end)`` (the response
  reader's fast lane)

- ``make_request(...)``, ``make_response(...)``: the event of such a head
- ``make_data(data)``: a body piece's event
- ``HeadScanner()``: ``scan_request``, ``scan_response_event``, ``make_request`` and
  ``make_data`` as methods; compiled, C methods that the compiled readers call without
  a Python call

Each scan returns the parsed head of a complete, simple message at ``data[pos:]``, or
None for anything else, which the readers then give to llhttp (see
``_heads_py`` for the subset and why it is safe).

Two twins with one interface: ``_heads`` (Cython: C loops over the bytes) and
``_heads_py`` (pure Python: the reference); the compiled one is used when built
unless ``LBCORE_NO_EXTENSIONS=1``.
"""

from __future__ import annotations

from lbcore._fastpath import twins, _heads_py

__all__ = ["IMPLEMENTATION", "IMPLEMENTATIONS", "HeadScanner", "make_data", "make_request", "make_response", "scan_request", "scan_response",
           "scan_response_event"]

IMPLEMENTATIONS, _impl = twins(_heads_py, "_heads")
IMPLEMENTATION: str = _impl.IMPLEMENTATION
scan_request = _impl.scan_request
scan_response = _impl.scan_response
scan_response_event = _impl.scan_response_event
make_request = _impl.make_request
make_response = _impl.make_response
make_data = _impl.make_data
HeadScanner = _impl.HeadScanner
