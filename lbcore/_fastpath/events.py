"""The HTTP/1.1 event classes: picks the twin that serves (see ``lbcore.l7._http1_events``).

``_events`` (Cython: extension types, fields in C) and ``_events_py`` (pure: frozen,
slotted dataclasses, the reference) have one interface and one behaviour; the
compiled one is used when built unless ``LBCORE_NO_EXTENSIONS=1``.
"""

from __future__ import annotations

from lbcore._fastpath import _events_py, twins

__all__ = ["IMPLEMENTATION", "IMPLEMENTATIONS", "Data", "EndOfMessage", "Headers", "InformationalResponse",
           "Request", "Response"]

IMPLEMENTATIONS, _impl = twins(_events_py, "_events")
IMPLEMENTATION: str = _impl.IMPLEMENTATION
Headers = _events_py.Headers
Request = _impl.Request
Response = _impl.Response
InformationalResponse = _impl.InformationalResponse
Data = _impl.Data
EndOfMessage = _impl.EndOfMessage
