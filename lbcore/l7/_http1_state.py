"""The HTTP/1.1 readers' states, their transitions, and what they share.

Theory of operation
-------------------
llhttp (through httptools) does the byte-level work and is strict by default:
the start line, field syntax (names are tokens, no whitespace before the
colon, no CTL but HTAB in values, no obs-fold, CRLF line ends), Content-Length
syntax and repeats, Content-Length together with Transfer-Encoding, chunk
sizes. httptools calls back into the reader for each part; the callbacks only
append bytes to lists, and one event is built per head, where the reader adds
what llhttp does not check: the HTTP version, Host, transfer codings, header
count and size limits, reason-phrase characters, upgrade and keep-alive
semantics.

Two things cannot be said to llhttp through httptools, so the readers decide
them:

* httptools ignores what on_headers_complete returns, so llhttp cannot learn
  that a response to HEAD (or a 101, or a 2xx to CONNECT) has no body. The
  ResponseReader (``_http1_responses``) therefore feeds llhttp one message at
  a time: a head up to the CRLF CRLF that ends it, then exactly
  Content-Length bytes, or a chunked body up to its last CRLF (found by
  ``_http1_chunks.ChunkScanner``), or everything for a body that ends at EOF.
  For a head without a body it stops llhttp from the callback (raising Stop)
  and takes a fresh parser for the next response.
* httptools has no feed_eof: the readers keep their own state and decide
  what EOF means.

Requests have no method-dependent framing, so the RequestReader
(``_http1_requests``) feeds llhttp whole buffers: pipelined requests are
parsed back to back, and llhttp pauses after an upgrade or CONNECT request
with the offset of the tunnel bytes.

Each reader's states and transitions are a table below; ``goto`` with an
event that has no entry for the current state means the peer's framing makes
no sense (or llhttp and the reader disagree), which is a ProtocolError.
"""

from __future__ import annotations

from typing import NoReturn

from ._http1_events import Data, EndOfMessage, ProtocolError

__all__ = [
    "IDLE", "HEAD", "BODY", "BODY_LENGTH", "BODY_CHUNKED", "BODY_UNTIL_EOF", "CLOSED", "TUNNEL",
    "REQUEST_STATES", "RESPONSE_STATES", "goto", "Stop", "translate", "EMPTY_END",
]

IDLE = "IDLE"  # between messages
HEAD = "HEAD"  # inside a head
BODY = "BODY"  # request body (llhttp knows its framing)
BODY_LENGTH = "BODY_LENGTH"  # response body of Content-Length bytes
BODY_CHUNKED = "BODY_CHUNKED"  # chunked response body
BODY_UNTIL_EOF = "BODY_UNTIL_EOF"  # response body delimited by the connection closing
CLOSED = "CLOSED"  # the last message on this connection is complete
TUNNEL = "TUNNEL"  # HTTP is over: upgrade or CONNECT

# (state, event) -> next state
REQUEST_STATES: dict[tuple[str, str], str] = {
    (IDLE, "begin"): HEAD,
    (HEAD, "head"): BODY,
    (BODY, "end"): IDLE,
    (BODY, "end-close"): CLOSED,
    (BODY, "end-tunnel"): TUNNEL,
}

RESPONSE_STATES: dict[tuple[str, str], str] = {
    (IDLE, "begin"): HEAD,
    (HEAD, "informational"): IDLE,  # 1xx: the final response is still to come
    (HEAD, "end"): IDLE,  # no body: HEAD, 204, 304
    (HEAD, "end-close"): CLOSED,
    (HEAD, "tunnel"): TUNNEL,  # 101, or 2xx to CONNECT
    (HEAD, "length"): BODY_LENGTH,
    (HEAD, "chunked"): BODY_CHUNKED,
    (HEAD, "until-eof"): BODY_UNTIL_EOF,
    (BODY_LENGTH, "end"): IDLE,
    (BODY_LENGTH, "end-close"): CLOSED,
    (BODY_CHUNKED, "end"): IDLE,
    (BODY_CHUNKED, "end-close"): CLOSED,
    (BODY_UNTIL_EOF, "eof"): CLOSED,
}


def goto(table: dict[tuple[str, str], str], state: str, event: str) -> str:
    """The state after ``event``; an event the table does not allow is a ProtocolError."""
    try:
        return table[state, event]
    except KeyError:
        raise ProtocolError(f"unexpected {event} in state {state}", 400) from None


# llhttp error reasons that are not a plain 400.
_LLHTTP_STATUS = {
    "Invalid HTTP version": 505,
    "Pause on PRI/Upgrade": 505,  # the HTTP/2 connection preface
}

EMPTY_END = EndOfMessage()


# A reader's ``fast_lane`` when none is given: its module's ``default_fast_lane`` (the
# selected twin of lbcore._fastpath.heads; tests swap twins there).
DEFAULT = object()


class Stop(Exception):
    """Raised from a callback to stop llhttp where the reader has taken over."""


def translate(exc: Exception) -> ProtocolError:
    """The ProtocolError for an error out of httptools.

    A ProtocolError raised in a callback comes back wrapped in
    HttpParserCallbackError, with the original as ``__context__``.
    """
    inner = exc.__context__
    if isinstance(inner, ProtocolError):
        return inner
    reason = str(exc)
    return ProtocolError(f"malformed HTTP/1.1 message: {reason}", _LLHTTP_STATUS.get(reason, 400))


class ReaderBase:
    """What the request and response readers share: failing for good, flushing a body
    piece as one Data event, and, once upgraded, keeping the bytes that follow to hand
    them over once."""

    _state: object
    _tail: list[bytes]
    _tail_taken: bool
    _error: ProtocolError | None
    _body: list[bytes]
    _events: list

    def _fail(self, exc: ProtocolError, events: list) -> NoReturn:
        exc.events = events
        self._error = exc
        raise exc

    def _flush_body(self) -> None:
        body = self._body
        self._events.append(Data(body[0] if len(body) == 1 else b"".join(body)))
        self._body = []

    def take_tail(self) -> bytes:
        """The bytes after the upgrade (101, CONNECT); the reader then takes no more input."""
        if self._state is not TUNNEL or self._tail_taken:
            raise RuntimeError("take_tail() needs an upgraded reader, once")
        self._tail_taken = True
        tail = b"".join(self._tail)
        self._tail = []
        return tail

    def _tunnel_input(self, data: bytes) -> list:
        if self._tail_taken:
            raise RuntimeError("the reader is upgraded: tunnel bytes no longer go through it")
        self._tail.append(bytes(data))
        return []
