"""The HTTP/1.1 response reader (client side); see ``_http1_state`` for how the readers work."""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

from lbcore._fastpath import heads

from ._http1_chunks import ChunkScanner
from ._http1_events import (
    EndOfMessage,
    Event,
    InformationalResponse,
    ProtocolError,
    Response,
)
from ._http1_headers import (
    REASON_RE,
    connection_options,
    decode_fields,
    group_fields,
    is_keep_alive,
    parse_content_length,
    parse_transfer_encoding,
)
from ._http1_state import (
    BODY_CHUNKED,
    BODY_LENGTH,
    BODY_UNTIL_EOF,
    CLOSED,
    DEFAULT,
    EMPTY_END,
    HEAD,
    IDLE,
    RESPONSE_STATES,
    TUNNEL,
    ReaderBase,
    Stop,
    goto,
    translate,
)

__all__ = ["ResponseReader"]

# As in _http1_requests: the scan and the maker as C methods when compiled.
_scanner = heads.HeadScanner()
_scan_response_event = heads.scan_response_event  # a fast lane that is this one is _scanner's

# Fields that decide framing and connection handling.
_FIELDS = frozenset({"content-length", "transfer-encoding", "connection"})

# The fast lane: data, pos, method, max_header_bytes, max_headers -> (Response, end) or None.
ScanResponse = Callable[[bytes, int, str, int, int], tuple | None]

# The fast lane of a reader made without ``fast_lane=``.
default_fast_lane: ScanResponse | None = heads.scan_response_event


class ResponseReader(ReaderBase):
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

    ``fast_lane`` (default: the module's ``default_fast_lane``, i.e.
    ``lbcore._fastpath.heads.scan_response_event``, the
    compiled twin when built) recognises a complete simple head (no body, or a
    Content-Length body) where a response begins; the reader then builds the
    Response itself and hands the body on as Data, counting its bytes, so the
    message never reaches llhttp, which stays at a message boundary. Any other
    head goes to llhttp as before. The events and errors are the same either
    way; None turns the fast lane off.
    """

    def __init__(
        self,
        *,
        max_header_bytes: int = 65536,
        max_headers: int = 200,
        fast_lane: ScanResponse | None | object = DEFAULT,
    ) -> None:
        # configuration
        self._fast_lane = default_fast_lane if fast_lane is DEFAULT else fast_lane
        self._max_header_bytes = max_header_bytes
        self._max_headers = max_headers
        # connection
        self._parser: HttpResponseParser | None = None  # llhttp, made when a message needs it (the fast lane may never)
        # The request methods of the responses still to come, oldest first (pipelining:
        # rarely more than one). A list, not a deque: compiled, append and del [0] are C
        # calls (the .pxd), a deque's are method calls (and so is a short list's pop(0)).
        self._expected: list[str] = []
        self._state = IDLE
        self._error: ProtocolError | None = None
        self._eof = False
        self._tail: list[bytes] = []
        self._tail_taken = False
        self.upgraded = False
        self._chunks = ChunkScanner(max_header_bytes)
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
        self._direct = False  # the fast lane took the head: the body bypasses llhttp
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
        if state is IDLE and self._fast_lane is not None and self._expected:
            whole = self._whole_message(data)
            if whole is not None:
                return whole
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
            events.append(EMPTY_END)
            del self._expected[0]
            self._goto("eof")
        elif state is BODY_LENGTH or state is BODY_CHUNKED or (state is HEAD and self._begun):
            self._fail(ProtocolError("connection closed in the middle of a response", 400), events)
        return events

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
                if self._direct:
                    # what on_body and on_message_complete would have done
                    self._body.append(data[pos : pos + take])
                    pos += take
                    if not self._left:
                        self._end_message()
                    continue
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
                self._direct = False
                if self._fast_lane is not None:
                    head = self._fast_lane(data, pos, self._expected[0], self._max_header_bytes, self._max_headers)
                    if head is not None:
                        pos = self._fast_head(head)
            elif state is TUNNEL:
                self._tail.append(data[pos:end])
                return
            else:  # CLOSED: what follows a closing response is ignored
                return

    def _whole_message(self, data: bytes) -> list[Event] | None:
        """The events of ``data`` when it is exactly one simple response (the usual
        keep-alive answer, in one read): what ``_run`` would emit, in one step."""
        assert self._fast_lane is not None
        method = self._expected[0]
        if self._fast_lane is _scan_response_event:
            head = _scanner.scan_response_event(data, 0, method, self._max_header_bytes, self._max_headers)
        else:
            head = self._fast_lane(data, 0, method, self._max_header_bytes, self._max_headers)
        if head is None:
            return None
        response, end = head
        if type(response) is Response:
            # Compiled, ``event`` is typed (the .pxd): its fields are C fields, where a
            # read of ``response.status`` is a generic lookup. Tests may give a fast
            # lane that makes another kind of event: the other branch.
            event = response
            status = event.status
            length = event.content_length
            keep_alive = event.keep_alive
        else:
            status = response.status
            length = response.content_length
            keep_alive = response.keep_alive
        body = len(data) - end
        # The length first: compiled, a str == str that is not one object is a
        # PyUnicode_Compare call (Cython 3.3), and most requests are a GET.
        if (len(method) == 4 and method == "HEAD") or status == 204 or status == 304 or not length:
            if body:
                return None
            events = [response, EMPTY_END]
        elif body == length:
            events = [response, _scanner.make_data(data[end:]), EMPTY_END]
        else:
            return None
        del self._expected[0]
        self._keep_alive = keep_alive
        self._state = IDLE if keep_alive else CLOSED
        self._events = events
        return events

    def _fast_head(self, head: tuple) -> int:
        """Emit a head the fast lane recognised (as on_headers_complete would); the
        index after it. A body of Content-Length bytes then goes the direct way."""
        response, end = head
        status = response.status
        length = response.content_length
        method = self._expected[0]
        self._keep_alive = response.keep_alive
        self._events.append(response)
        if not length or (len(method) == 4 and method == "HEAD") or status == 204 or status == 304:
            self._end_message()
        else:
            self._left = length
            self._direct = True
            self._goto("length")
        return end

    def _end_message(self) -> None:
        # What on_message_complete does for a message without trailers.
        if self._body:
            self._flush_body()
        self._events.append(EMPTY_END)
        del self._expected[0]
        self._goto("end" if self._keep_alive else "end-close")

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
            parser = self._parser
            if parser is None:
                parser = self._parser = HttpResponseParser(self)
            parser.feed_data(segment)
        except HttpParserError as exc:
            if isinstance(exc.__context__, Stop):
                # The head had no body: llhttp, which would read one, is replaced
                # (by a fresh parser when the next message needs one).
                self._parser = None
                return
            raise translate(exc) from exc
        except HttpParserUpgrade:
            raise ProtocolError("unexpected upgrade in a response", 400) from None

    def _goto(self, event: str) -> None:
        self._state = goto(RESPONSE_STATES, self._state, event)

    def _end_without_body(self, response: Response, event: str) -> NoReturn:
        self._events.append(response)
        self._events.append(EMPTY_END)
        del self._expected[0]
        self._goto(event)
        raise Stop()

    # -- httptools callbacks -----------------------------------------------------
    def on_message_begin(self) -> None:
        if self._state is not HEAD:
            raise ProtocolError(f"a response begins in state {self._state}", 400)
        self._begun = True

    def on_status(self, reason: bytes) -> None:
        self._reason.append(reason)

    def on_header(self, name: bytes, value: bytes) -> None:
        # Header fields, and after on_headers_complete the trailer fields. The
        # bytes are bounded as they are fed (_run, ChunkScanner), the count
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
            raise Stop()
        method = self._expected[0]
        found = group_fields(headers, _FIELDS)
        te = found.get("transfer-encoding")
        cl = found.get("content-length")
        length = None if cl is None else parse_content_length(cl)
        keep_alive = is_keep_alive(version, connection_options(found.get("connection")))

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
            self._events.append(EMPTY_END)
        del self._expected[0]
        self._goto("end" if self._keep_alive else "end-close")
        if not self._parser.should_keep_alive():
            # llhttp will refuse what follows ("Data after `Connection: close`")
            # where the reader would not (Proxy-Connection: close); so that the
            # same happens, everything from now on goes to llhttp.
            self._fast_lane = None
