"""HTTP/1.1 readers: bytes in, events out, with llhttp (httptools) doing the parsing.

Theory of operation
-------------------
llhttp does the byte-level work and is strict by default: the start line,
field syntax (names are tokens, no whitespace before the colon, no CTL but HTAB
in values, no obs-fold, CRLF line ends), Content-Length syntax and repeats,
Content-Length together with Transfer-Encoding, chunk sizes. httptools calls
back into the reader for each part; the callbacks only append bytes to lists,
and one event is built per head, where the reader adds what llhttp does not
check: the HTTP version, Host, transfer codings, header count and size limits,
reason-phrase characters, upgrade and keep-alive semantics.

Two things cannot be said to llhttp through httptools, so the readers decide
them:

* httptools ignores what on_headers_complete returns, so llhttp cannot learn
  that a response to HEAD (or a 101, or a 2xx to CONNECT) has no body. The
  ResponseReader therefore feeds llhttp one message at a time: a head up to
  the CRLF CRLF that ends it, then exactly Content-Length bytes, or a chunked
  body up to its last CRLF (found by _ChunkScanner), or everything for a
  body that ends at EOF. For a head without a body it stops llhttp from the
  callback and takes a fresh parser for the next response.
* httptools has no feed_eof: the readers keep their own state and decide
  what EOF means.

Requests have no method-dependent framing, so the RequestReader feeds llhttp
whole buffers: pipelined requests are parsed back to back, and llhttp pauses
after an upgrade or CONNECT request with the offset of the tunnel bytes.

Each reader's states and transitions are a table (_REQUEST_STATES,
_RESPONSE_STATES); an event with no entry for the current state means the
peer's framing makes no sense (or llhttp and the reader disagree), which is a
ProtocolError.
"""

from __future__ import annotations

import re
from collections import deque
from typing import NoReturn

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser, HttpResponseParser

from ._http1_events import Data, EndOfMessage, Event, InformationalResponse, ProtocolError, Request, Response
from ._http1_headers import REASON_RE, decode_fields, parse_content_length, parse_transfer_encoding

__all__ = ["RequestReader", "ResponseReader"]

# -- states ----------------------------------------------------------------------
IDLE = "IDLE"  # between messages
HEAD = "HEAD"  # inside a head
BODY = "BODY"  # request body (llhttp knows its framing)
BODY_LENGTH = "BODY_LENGTH"  # response body of Content-Length bytes
BODY_CHUNKED = "BODY_CHUNKED"  # chunked response body
BODY_UNTIL_EOF = "BODY_UNTIL_EOF"  # response body delimited by the connection closing
CLOSED = "CLOSED"  # the last message on this connection is complete
TUNNEL = "TUNNEL"  # HTTP is over: upgrade or CONNECT

_REQUEST_STATES: dict[tuple[str, str], str] = {
    (IDLE, "begin"): HEAD,
    (HEAD, "head"): BODY,
    (BODY, "end"): IDLE,
    (BODY, "end-close"): CLOSED,
    (BODY, "end-tunnel"): TUNNEL,
}

_RESPONSE_STATES: dict[tuple[str, str], str] = {
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

# Fields that decide framing and connection handling.
_REQUEST_FIELDS = frozenset({"host", "content-length", "transfer-encoding", "connection", "upgrade", "expect"})
_RESPONSE_FIELDS = frozenset({"content-length", "transfer-encoding", "connection"})

# llhttp error reasons that are not a plain 400.
_LLHTTP_STATUS = {
    "Invalid HTTP version": 505,
    "Pause on PRI/Upgrade": 505,  # the HTTP/2 connection preface
}

# The longest method llhttp knows ("UNSUBSCRIBE") and the rest of a request line
# (two SP, "HTTP/1.1", CRLF): the budget a target may use before the line is
# measured exactly.
_LONGEST_METHOD = 11
_LINE_OVERHEAD = 12

_EMPTY_END = EndOfMessage()


class _Stop(Exception):
    """Raised from a callback to stop llhttp where the reader has taken over."""


def _translate(exc: Exception) -> ProtocolError:
    """The ProtocolError for an error out of httptools.

    A ProtocolError raised in a callback comes back wrapped in
    HttpParserCallbackError, with the original as ``__context__``.
    """
    inner = exc.__context__
    if isinstance(inner, ProtocolError):
        return inner
    reason = str(exc)
    return ProtocolError(f"malformed HTTP/1.1 message: {reason}", _LLHTTP_STATUS.get(reason, 400))


def _group(headers: tuple[tuple[str, str], ...], wanted: frozenset[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, value in headers:
        lname = name.lower()
        if lname in wanted:
            found.setdefault(lname, []).append(value)
    return found


def _tokens(values: list[str] | None) -> frozenset[str]:
    if not values:
        return frozenset()
    return frozenset(t.strip(" \t").lower() for v in values for t in v.split(","))


def _keep_alive(version: str, tokens: frozenset[str]) -> bool:
    # RFC 9112 9.3
    if "close" in tokens:
        return False
    return version == "1.1" or "keep-alive" in tokens


class RequestReader:
    """Server side: request bytes in, Request/Data/EndOfMessage events out.

    Limits (defaults as Apache's LimitRequestLine 8190 and LimitRequestFields
    100, and nginx's large_client_header_buffers 4 x 8k for the header section):

    * ``max_request_line``: bytes in the request line, CRLF included (414).
    * ``max_header_bytes``: the header section, counted as name + value + 4
      (": " and CRLF) per field (431); the trailer section has the same limit.
    * ``max_headers``: fields in the header section, or in the trailers (431).

    A head still incomplete at the end of a ``feed`` is held by httptools; the
    reader counts every later byte fed into it and refuses a head that has
    taken more than ``max_request_line + max_header_bytes``, so one incomplete
    head costs at most that much plus one ``feed``.

    After a message that closes the connection (``keep_alive`` False) the
    reader ignores what follows (RFC 9112 9.6). After an upgrade or CONNECT
    request ``upgraded`` is True and ``take_tail()`` returns the bytes that
    followed it; a server that declines an upgrade hands those bytes to a fresh
    RequestReader.
    """

    def __init__(self, *, max_request_line: int = 8192, max_header_bytes: int = 32768, max_headers: int = 100) -> None:
        # configuration
        self._max_request_line = max_request_line
        self._max_header_bytes = max_header_bytes
        self._max_headers = max_headers
        self._url_budget = max_request_line - _LONGEST_METHOD - _LINE_OVERHEAD
        # connection
        self._parser = HttpRequestParser(self)
        self._state = IDLE
        self._error: ProtocolError | None = None
        self._eof = False
        self._tail: list[bytes] = []
        self._tail_taken = False
        self.upgraded = False
        self._seq = 0  # messages begun, to tell one head from the next
        # one feed() call
        self._events: list[Event] = []
        self._body: list[bytes] = []
        # one message
        self._url: list[bytes] = []
        self._url_len = 0
        self._names: list[bytes] = []
        self._values: list[bytes] = []
        self._stalled = 0  # bytes fed into this message that produced nothing
        self._chunked = False
        self._keep_alive = True
        self._tunnel = False

    # -- input -------------------------------------------------------------------
    def feed(self, data: bytes) -> list[Event]:
        """Parse ``data``; return the events it completes, in order."""
        if self._error is not None:
            raise self._error
        if self._eof:
            raise RuntimeError("feed() after feed_eof()")
        state = self._state
        if state is TUNNEL:
            return self._tunnel_input(data)
        if state is CLOSED:
            return []
        events = self._events = []
        seq = self._seq
        view = data
        try:
            while True:
                try:
                    self._parser.feed_data(view)
                    break
                except HttpParserUpgrade as pause:
                    offset = pause.args[0]
                    if self._state is TUNNEL:
                        self._tail.append(bytes(view[offset:]))
                        break
                    # llhttp paused for an upgrade that is not one (an HTTP/1.0
                    # request); the body was refused, so go on after the head.
                    view = memoryview(view)[offset:]
                    if not view or self._state is CLOSED:
                        break
                except HttpParserError as exc:
                    if self._state is CLOSED:
                        break  # bytes after a closing message are ignored
                    raise _translate(exc) from exc
            if self._state is HEAD or (self._state is BODY and self._chunked):
                self._check_incomplete(state, seq, len(data))
        except ProtocolError as exc:
            self._fail(exc, events)
        if self._body:
            self._flush_body()
        return events

    def feed_eof(self) -> list[Event]:
        """The client closed its side: nothing if between messages, else an error."""
        if self._error is not None:
            raise self._error
        self._eof = True
        if self._state in (IDLE, CLOSED, TUNNEL):
            return []
        self._fail(ProtocolError("connection closed in the middle of a request", 400), [])

    def take_tail(self) -> bytes:
        """The bytes after an upgrade or CONNECT request; the reader then takes no more input."""
        if self._state is not TUNNEL or self._tail_taken:
            raise RuntimeError("take_tail() needs an upgraded reader, once")
        self._tail_taken = True
        tail = b"".join(self._tail)
        self._tail = []
        return tail

    def _tunnel_input(self, data: bytes) -> list[Event]:
        if self._tail_taken:
            raise RuntimeError("the reader is upgraded: tunnel bytes no longer go through it")
        self._tail.append(bytes(data))
        return []

    def _check_incomplete(self, state: str, seq: int, size: int) -> None:
        # Bound what httptools holds for an incomplete head or trailer field:
        # the fields it has handed over are measured, and every byte of a feed
        # that went wholly into the same head, or into a chunked body without
        # yielding data (chunk lines, trailers), is counted.
        if self._state is state and self._seq == seq and not self._body:
            self._stalled += size
            if self._stalled > self._max_request_line + self._max_header_bytes:
                raise ProtocolError("request head or trailer section too large", 431)
        else:
            self._stalled = 0
        if self._names:
            self._check_fields("header" if self._state is HEAD else "trailer")

    def _check_fields(self, section: str) -> None:
        names = self._names
        if len(names) > self._max_headers:
            raise ProtocolError(f"more than {self._max_headers} {section} fields", 431)
        size = sum(map(len, names)) + sum(map(len, self._values)) + 4 * len(names)
        if size > self._max_header_bytes:
            raise ProtocolError(f"{section} section larger than {self._max_header_bytes} bytes", 431)

    def _fail(self, exc: ProtocolError, events: list[Event]) -> NoReturn:
        exc.events = events
        self._error = exc
        raise exc

    def _goto(self, event: str) -> None:
        try:
            self._state = _REQUEST_STATES[self._state, event]
        except KeyError:
            raise ProtocolError(f"unexpected {event} in state {self._state}", 400) from None

    def _flush_body(self) -> None:
        body = self._body
        self._events.append(Data(body[0] if len(body) == 1 else b"".join(body)))
        self._body = []

    # -- httptools callbacks -----------------------------------------------------
    def on_message_begin(self) -> None:
        if self._state is CLOSED:
            raise _Stop()
        self._goto("begin")
        self._seq += 1
        self._url = []
        self._url_len = 0
        self._names = []
        self._values = []
        self._stalled = 0

    def on_url(self, url: bytes) -> None:
        self._url.append(url)
        self._url_len += len(url)
        if self._url_len > self._url_budget:
            line = self._url_len + len(self._parser.get_method()) + _LINE_OVERHEAD
            if line > self._max_request_line:
                raise ProtocolError(f"request line longer than {self._max_request_line} bytes", 414)

    def on_header(self, name: bytes, value: bytes) -> None:
        # Header fields, and after on_headers_complete the trailer fields; the
        # limits are checked once per section and at the end of each feed().
        self._names.append(name)
        self._values.append(value)

    def on_headers_complete(self) -> None:
        self._check_fields("header")
        parser = self._parser
        version = parser.get_http_version()
        if version != "1.1" and version != "1.0":
            raise ProtocolError(f"HTTP/{version} is not supported", 505)
        method = parser.get_method().decode("ascii")
        url = self._url
        target = (url[0] if len(url) == 1 else b"".join(url)).decode("latin-1")
        headers = decode_fields(self._names, self._values)
        self._names = []
        self._values = []

        found = _group(headers, _REQUEST_FIELDS)
        hosts = found.get("host")
        if hosts is None:
            if version == "1.1":
                raise ProtocolError("HTTP/1.1 request without Host", 400)
        elif len(hosts) > 1:
            raise ProtocolError("more than one Host header", 400)
        te = found.get("transfer-encoding")
        cl = found.get("content-length")
        chunked = False
        length = None
        if te is not None:
            if cl is not None:
                raise ProtocolError("both Content-Length and Transfer-Encoding", 400)
            if version == "1.0":
                # RFC 9112 6.1: treat as faulty framing.
                raise ProtocolError("Transfer-Encoding in an HTTP/1.0 request", 400)
            parse_transfer_encoding(te)
            chunked = True
        elif cl is not None:
            length = parse_content_length(cl)
        tokens = _tokens(found.get("connection"))
        keep_alive = _keep_alive(version, tokens)
        upgrade = None
        if version == "1.1" and "upgrade" in tokens:
            offered = ", ".join(found.get("upgrade", ())).strip(" \t")
            upgrade = offered or None
        expect_continue = version == "1.1" and any(
            v.strip(" \t").lower() == "100-continue" for v in found.get("expect", ())
        )
        # llhttp stops after the head of an upgrade or CONNECT request and
        # does not read its body, so such a request must not have one.
        paused = parser.should_upgrade()
        if paused and (chunked or length):
            raise ProtocolError("an upgrade or CONNECT request with a body is not supported", 400)
        if not paused:
            upgrade = None
        self._tunnel = paused and (upgrade is not None or method == "CONNECT")
        self._keep_alive = keep_alive
        self._chunked = chunked
        self._events.append(
            Request(method, target, headers, version, keep_alive, chunked, length, expect_continue, upgrade)
        )
        self._goto("head")

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._body:
            self._flush_body()
        if self._names:
            self._check_fields("trailer")
            self._events.append(EndOfMessage(decode_fields(self._names, self._values)))
        else:
            self._events.append(_EMPTY_END)
        if self._tunnel:
            self._goto("end-tunnel")
            self.upgraded = True
        else:
            self._goto("end" if self._keep_alive else "end-close")


class _ChunkScanner:
    """Finds the end of a chunked body (RFC 9112 7.1) without decoding it.

    The ResponseReader feeds llhttp one message at a time, and only this tells
    where a chunked message stops. It is lenient about what llhttp checks (the
    same bytes go to llhttp, which rejects bad chunk lines); it only has to be
    exact for valid input and bounded for any input.
    """

    __slots__ = ("_state", "_left", "_line", "_trailer_bytes", "_max_trailer_bytes")

    SIZE, DATA, TRAILER = 0, 1, 2
    MAX_SIZE_LINE = 4096  # chunk-size and chunk extensions

    _HEX = re.compile(rb"[0-9A-Fa-f]+")

    def __init__(self, max_trailer_bytes: int) -> None:
        self._max_trailer_bytes = max_trailer_bytes
        self.reset()

    def reset(self) -> None:
        self._state = self.SIZE
        self._left = 0
        self._line = b""
        self._trailer_bytes = 0

    def scan(self, data: bytes, pos: int, end: int) -> int:
        """The index just after the body's last CRLF in data[pos:end], or -1."""
        while pos < end:
            if self._state == self.DATA:
                take = min(self._left, end - pos)
                pos += take
                self._left -= take
                if not self._left:
                    self._state = self.SIZE
                continue
            nl = data.find(b"\n", pos, end)
            if nl < 0:
                self._line += data[pos:end]
                self._check_line(len(self._line))
                return -1
            line = self._line + data[pos:nl] if self._line else data[pos:nl]
            self._line = b""
            pos = nl + 1
            self._check_line(len(line))
            if self._state == self.SIZE:
                size = line.split(b";", 1)[0].rstrip(b"\r").strip(b" \t")
                if not self._HEX.fullmatch(size):
                    raise ProtocolError(f"invalid chunk size {size[:20]!r}", 400)
                n = int(size, 16)
                if n:
                    self._left = n + 2  # the data and its CRLF
                    self._state = self.DATA
                else:
                    self._state = self.TRAILER
            elif line == b"\r" or not line:
                return pos
            else:
                self._trailer_bytes += len(line) + 1
                if self._trailer_bytes > self._max_trailer_bytes:
                    raise ProtocolError("trailer section too large", 431)
        return -1

    def _check_line(self, length: int) -> None:
        if self._state == self.SIZE:
            if length > self.MAX_SIZE_LINE:
                raise ProtocolError("chunk size line too long", 400)
        elif self._trailer_bytes + length > self._max_trailer_bytes:
            raise ProtocolError("trailer section too large", 431)


class ResponseReader:
    """Client side: response bytes in, Response/InformationalResponse/Data/EndOfMessage out.

    Call ``expect(method)`` once per request sent, in order; a response to HEAD
    has no body and a 2xx response to CONNECT starts a tunnel. Framing follows
    RFC 9112 6.3: no body after HEAD, 1xx, 204 and 304; Transfer-Encoding
    chunked; else Content-Length; else the body ends at EOF (``feed_eof``),
    and the response is not keep-alive.

    ``max_header_bytes`` bounds the whole head, status line included (431);
    ``max_headers`` the number of fields (431); the trailer section of a
    chunked body has the same limits.

    Response bytes while no request is outstanding are a ProtocolError (blank
    lines excepted); bytes after a response that closes the connection are
    ignored. After a 101 (or a 2xx to CONNECT) ``upgraded`` is True and
    ``take_tail()`` returns the bytes that followed the head.
    """

    def __init__(self, *, max_header_bytes: int = 65536, max_headers: int = 200) -> None:
        # configuration
        self._max_header_bytes = max_header_bytes
        self._max_headers = max_headers
        # connection
        self._parser = HttpResponseParser(self)
        self._expected: deque[str] = deque()
        self._state = IDLE
        self._error: ProtocolError | None = None
        self._eof = False
        self._tail: list[bytes] = []
        self._tail_taken = False
        self.upgraded = False
        self._chunks = _ChunkScanner(max_header_bytes)
        # one feed() call
        self._events: list[Event] = []
        self._body: list[bytes] = []
        # one message
        self._begun = False
        self._head_bytes = 0
        self._carry = b""  # the last bytes of the head fed so far
        self._cut = False  # the segment being fed ends with the head's CRLF CRLF
        self._reason: list[bytes] = []
        self._names: list[bytes] = []
        self._values: list[bytes] = []
        self._left = 0  # bytes to come of a Content-Length body
        self._keep_alive = True

    def expect(self, method: str) -> None:
        """Note a request sent: its response comes after those already expected."""
        self._expected.append(method)

    # -- input -------------------------------------------------------------------
    def feed(self, data: bytes) -> list[Event]:
        """Parse ``data``; return the events it completes, in order."""
        if self._error is not None:
            raise self._error
        if self._eof:
            raise RuntimeError("feed() after feed_eof()")
        state = self._state
        if state is TUNNEL:
            return self._tunnel_input(data)
        if state is CLOSED:
            return []
        if type(data) is not bytes:
            data = bytes(data)
        events = self._events = []
        try:
            self._run(data)
        except ProtocolError as exc:
            self._fail(exc, events)
        if self._body:
            self._flush_body()
        return events

    def feed_eof(self) -> list[Event]:
        """The server closed its side: ends a body delimited by EOF; mid-message it is an error."""
        if self._error is not None:
            raise self._error
        if self._eof:
            return []
        self._eof = True
        state = self._state
        events = self._events = []
        if state is BODY_UNTIL_EOF:
            events.append(_EMPTY_END)
            self._expected.popleft()
            self._goto("eof")
        elif state is BODY_LENGTH or state is BODY_CHUNKED or (state is HEAD and self._begun):
            self._fail(ProtocolError("connection closed in the middle of a response", 400), events)
        return events

    def take_tail(self) -> bytes:
        """The bytes after a 101 (or 2xx to CONNECT) head; the reader then takes no more input."""
        if self._state is not TUNNEL or self._tail_taken:
            raise RuntimeError("take_tail() needs an upgraded reader, once")
        self._tail_taken = True
        tail = b"".join(self._tail)
        self._tail = []
        return tail

    def _tunnel_input(self, data: bytes) -> list[Event]:
        if self._tail_taken:
            raise RuntimeError("the reader is upgraded: tunnel bytes no longer go through it")
        self._tail.append(bytes(data))
        return []

    def _run(self, data: bytes) -> None:
        # Feed llhttp one message (part) at a time; see the module docstring.
        view = memoryview(data)
        pos, end = 0, len(data)
        while pos < end:
            state = self._state
            if state is HEAD:
                stop = self._head_end(data, pos, end)
                seg_end = end if stop < 0 else stop
                self._head_bytes += seg_end - pos
                if self._head_bytes > self._max_header_bytes:
                    raise ProtocolError("response head too large", 431)
                self._cut = stop >= 0
                self._execute(view[pos:seg_end])
                if stop < 0:
                    self._carry = (self._carry + data[max(pos, end - 3) : end])[-3:]
                    return
                self._carry = b""
                pos = seg_end
            elif state is BODY_LENGTH:
                take = min(self._left, end - pos)
                self._left -= take
                self._execute(view[pos : pos + take])
                pos += take
                if not self._left and self._state is BODY_LENGTH:
                    raise ProtocolError("response body framing disagrees with the parser", 400)
            elif state is BODY_CHUNKED:
                stop = self._chunks.scan(data, pos, end)
                seg_end = end if stop < 0 else stop
                self._execute(view[pos:seg_end])
                pos = seg_end
                if stop >= 0 and self._state is BODY_CHUNKED:
                    raise ProtocolError("chunked body framing disagrees with the parser", 400)
            elif state is BODY_UNTIL_EOF:
                self._execute(view[pos:end])
                return
            elif state is IDLE:
                if not self._expected:
                    if data[pos:end].strip(b"\r\n"):
                        raise ProtocolError("response bytes with no request outstanding", 400)
                    return
                self._goto("begin")
                self._begun = False
                self._head_bytes = 0
                self._carry = b""
                self._reason = []
                self._names = []
                self._values = []
            elif state is TUNNEL:
                self._tail.append(data[pos:end])
                return
            else:  # CLOSED: what follows a closing response is ignored
                return

    def _head_end(self, data: bytes, pos: int, end: int) -> int:
        """The index just after the CRLF CRLF ending the head, or -1."""
        carry = self._carry
        if carry:
            probe = carry + data[pos : pos + 3]
            i = probe.find(b"\r\n\r\n")
            if i >= 0:
                return pos + i + 4 - len(carry)
        i = data.find(b"\r\n\r\n", pos, end)
        return -1 if i < 0 else i + 4

    def _execute(self, segment: memoryview) -> None:
        try:
            self._parser.feed_data(segment)
        except HttpParserError as exc:
            if isinstance(exc.__context__, _Stop):
                # The head had no body: llhttp, which would read one, is replaced.
                self._parser = HttpResponseParser(self)
                return
            raise _translate(exc) from exc
        except HttpParserUpgrade:
            raise ProtocolError("unexpected upgrade in a response", 400) from None

    def _fail(self, exc: ProtocolError, events: list[Event]) -> NoReturn:
        exc.events = events
        self._error = exc
        raise exc

    def _goto(self, event: str) -> None:
        try:
            self._state = _RESPONSE_STATES[self._state, event]
        except KeyError:
            raise ProtocolError(f"unexpected {event} in state {self._state}", 400) from None

    def _flush_body(self) -> None:
        body = self._body
        self._events.append(Data(body[0] if len(body) == 1 else b"".join(body)))
        self._body = []

    def _end_without_body(self, response: Response, event: str) -> None:
        self._events.append(response)
        self._events.append(_EMPTY_END)
        self._expected.popleft()
        self._goto(event)
        raise _Stop()

    # -- httptools callbacks -----------------------------------------------------
    def on_message_begin(self) -> None:
        if self._state is not HEAD:
            raise ProtocolError(f"a response begins in state {self._state}", 400)
        self._begun = True

    def on_status(self, reason: bytes) -> None:
        self._reason.append(reason)

    def on_header(self, name: bytes, value: bytes) -> None:
        # Header fields, and after on_headers_complete the trailer fields. The
        # bytes are bounded as they are fed (_run, _ChunkScanner), the count
        # once per section.
        self._names.append(name)
        self._values.append(value)

    def on_headers_complete(self) -> None:
        if not self._cut:
            raise ProtocolError("response head not ended by CRLF CRLF", 400)
        parser = self._parser
        version = parser.get_http_version()
        if version != "1.1" and version != "1.0":
            raise ProtocolError(f"HTTP/{version} is not supported", 505)
        status = parser.get_status_code()
        if status < 100:
            raise ProtocolError(f"invalid status code {status}", 400)
        reason_bytes = b"".join(self._reason)
        if REASON_RE.fullmatch(reason_bytes) is None:
            raise ProtocolError("invalid character in reason phrase", 400)
        reason = reason_bytes.decode("latin-1")
        if len(self._names) > self._max_headers:
            raise ProtocolError(f"more than {self._max_headers} header fields", 431)
        headers = decode_fields(self._names, self._values)
        self._names = []
        self._values = []

        if status < 200 and status != 101:
            self._events.append(InformationalResponse(status, reason, headers))
            self._goto("informational")
            raise _Stop()
        method = self._expected[0]
        found = _group(headers, _RESPONSE_FIELDS)
        te = found.get("transfer-encoding")
        cl = found.get("content-length")
        length = None if cl is None else parse_content_length(cl)
        keep_alive = _keep_alive(version, _tokens(found.get("connection")))

        if status == 101 or (method == "CONNECT" and 200 <= status < 300):
            self.upgraded = True
            self._end_without_body(Response(status, reason, headers, version, False, te is not None, length), "tunnel")
        if method == "HEAD" or status == 204 or status == 304:
            self._end_without_body(
                Response(status, reason, headers, version, keep_alive, te is not None, length),
                "end" if keep_alive else "end-close",
            )
        if te is not None:
            if cl is not None:
                raise ProtocolError("both Content-Length and Transfer-Encoding", 400)
            if version == "1.0":
                raise ProtocolError("Transfer-Encoding in an HTTP/1.0 response", 400)
            parse_transfer_encoding(te)
            self._chunks.reset()
            event = "chunked"
        elif length is not None:
            self._left = length
            event = "length"
        else:
            keep_alive = False
            event = "until-eof"
        self._keep_alive = keep_alive
        self._events.append(Response(status, reason, headers, version, keep_alive, te is not None, length))
        self._goto(event)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._body:
            self._flush_body()
        if self._names:
            if len(self._names) > self._max_headers:
                raise ProtocolError(f"more than {self._max_headers} trailer fields", 431)
            self._events.append(EndOfMessage(decode_fields(self._names, self._values)))
        else:
            self._events.append(_EMPTY_END)
        self._expected.popleft()
        self._goto("end" if self._keep_alive else "end-close")
