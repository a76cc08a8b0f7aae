"""Sans-IO HTTP/1.1 framing: readers that turn bytes into events, writers that turn heads into bytes.

The engine owns the sockets; this module only sees bytes. Per connection it
keeps one RequestReader (client side) and, per backend connection, one
ResponseReader; each ``feed`` returns the events the bytes complete::

    reader = RequestReader()
    for event in reader.feed(data):      # Request, Data..., EndOfMessage, Request, ...
        ...
    reader.feed_eof()                    # [] between messages, ProtocolError mid-message

Parsing is llhttp's (through httptools), strict, with the checks it lacks
added by the readers; the split of work and the readers' state tables are
described in ``_http1_state``. Any ProtocolError means: answer
``status_hint`` (or 502 for a backend's response) and close; the reader
refuses further input.

Modules: ``_http1_events`` (ProtocolError and the event classes),
``_http1_headers`` (field grammar, framing decisions, hop-by-hop fields),
``_http1_state`` (how the readers work, their state tables), ``_http1_requests``,
``_http1_responses``, ``_http1_chunks``, ``_http1_writers``.
"""

from __future__ import annotations

from ._http1_events import (
    Data,
    EndOfMessage,
    Event,
    Headers,
    InformationalResponse,
    ProtocolError,
    Request,
    Response,
)
from ._http1_headers import HOP_BY_HOP, connection_tokens
from ._http1_requests import RequestReader
from ._http1_responses import ResponseReader
from ._http1_writers import (
    encode_chunk,
    encode_last_chunk,
    encode_request_head,
    encode_response_head,
    error_response,
)

__all__ = [
    "ProtocolError",
    "Headers",
    "Event",
    "Request",
    "Response",
    "InformationalResponse",
    "Data",
    "EndOfMessage",
    "RequestReader",
    "ResponseReader",
    "encode_request_head",
    "encode_response_head",
    "encode_chunk",
    "encode_last_chunk",
    "error_response",
    "HOP_BY_HOP",
    "connection_tokens",
]
