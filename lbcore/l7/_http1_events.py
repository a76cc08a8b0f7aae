"""HTTP/1.1 events and the protocol error: what the readers hand to the engine.

Events are frozen dataclasses (h11 ``_events.py`` is the model). Header names and
values are ``str`` decoded as latin-1 (lossless for every byte HTTP/1.1 allows),
names exactly as received, order and repeats kept. The readers build events only
from input they have already validated, so the constructors check just the cheap
invariants a hand-built event could get wrong (the HTTP version, the status range).

- ``Request``: a request head (method, target, headers, http_version, keep_alive,
  chunked, content_length, expect_continue, upgrade);
- ``Response``: a final response head, 101 included (status, reason, headers,
  http_version, keep_alive, chunked, content_length);
- ``InformationalResponse``: a 1xx other than 101 (status, reason, headers);
- ``Data``: body bytes, de-chunked; ``EndOfMessage``: the end of a body, with the
  trailers of a chunked one.

The classes come in two twins with one behaviour (``lbcore._fastpath.events``): the
pure dataclasses of ``_events_py`` (the reference, where each field is documented)
and the compiled extension types of ``_events``, used when built unless
``LBCORE_NO_EXTENSIONS=1``.
"""

from __future__ import annotations

from lbcore._fastpath.events import Data, EndOfMessage, Headers, InformationalResponse, Request, Response

__all__ = [
    "ProtocolError",
    "Headers",
    "Request",
    "Response",
    "InformationalResponse",
    "Data",
    "EndOfMessage",
    "Event",
]

class ProtocolError(Exception):
    """The peer broke HTTP/1.1: answer ``status_hint`` (client side) and close.

    ``status_hint`` is one of 400, 413, 414, 431, 501, 505. For a response parsed
    from a backend the engine answers 502 whatever the hint says. ``events`` holds
    the events completed in the same ``feed`` call before the error was found
    (for example the requests pipelined ahead of a malformed one); a reader that
    raised refuses all further input by raising the same error again.
    """

    def __init__(self, message: str, status_hint: int = 400) -> None:
        super().__init__(message)
        self.status_hint = status_hint
        self.events: list[Event] = []


Event = Request | Response | InformationalResponse | Data | EndOfMessage
