"""The HTTP/1.1 request reader (server side); see ``_http1_state`` for how the readers work."""

from __future__ import annotations

from collections.abc import Callable

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser

from lbcore._fastpath import heads

from ._http1_events import EndOfMessage, Event, ProtocolError, Request
from ._http1_headers import (
    connection_options,
    decode_fields,
    group_fields,
    is_keep_alive,
    parse_content_length,
    parse_transfer_encoding,
)
from ._http1_state import (
    BODY,
    CLOSED,
    DEFAULT,
    EMPTY_END,
    HEAD,
    IDLE,
    REQUEST_STATES,
    TUNNEL,
    ReaderBase,
    Stop,
    goto,
    translate,
)

__all__ = ["RequestReader", "new_request_reader"]

# The scans and event makers as methods: compiled, a typed global (the .pxd) whose
# methods are C calls, where heads.scan_request and the makers were Python calls.
_scanner = heads.HeadScanner()
_scan_request = heads.scan_request  # a fast lane that is this one is _scanner's

# Fields that decide framing and connection handling.
_FIELDS = frozenset({"host", "content-length", "transfer-encoding", "connection", "upgrade", "expect"})

# The longest method llhttp knows ("UNSUBSCRIBE") and the rest of a request line
# (two SP, "HTTP/1.1", CRLF): the budget a target may use before the line is
# measured exactly.
_LONGEST_METHOD = 11
_LINE_OVERHEAD = 12

# The fast lane: data, pos, max_request_line, max_header_bytes, max_headers ->
# (method, target, headers, version, keep_alive, content_length, end) or None.
ScanRequest = Callable[[bytes, int, int, int, int], tuple | None]

# The fast lane of a reader made without ``fast_lane=``.
default_fast_lane: ScanRequest | None = heads.scan_request


class RequestReader(ReaderBase):
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

    ``fast_lane`` (default: the module's ``default_fast_lane``, i.e.
    ``lbcore._fastpath.heads.scan_request``, the compiled
    twin when built) recognises a complete simple request at the start of the
    unparsed bytes; such a request, when its whole body is in the same buffer,
    is turned into events here and never reaches llhttp. The first request it
    declines, and everything after it in that ``feed``, goes to llhttp, which is
    then at a message boundary because it never saw the fast ones. The events
    and errors are the same either way; None turns the fast lane off.
    """

    def __init__(
        self,
        max_request_line: int = 8192,
        max_header_bytes: int = 32768,
        max_headers: int = 100,
        *,
        fast_lane: ScanRequest | None | object = DEFAULT,
    ) -> None:
        self._setup(
            max_request_line, max_header_bytes, max_headers, default_fast_lane if fast_lane is DEFAULT else fast_lane
        )

    def _setup(self, max_request_line: int, max_header_bytes: int, max_headers: int, fast_lane) -> None:
        # configuration
        self._fast_lane = fast_lane
        self._max_request_line = max_request_line
        self._max_header_bytes = max_header_bytes
        self._max_headers = max_headers
        self._url_budget = max_request_line - _LONGEST_METHOD - _LINE_OVERHEAD
        # connection
        # llhttp, made with the lists its callbacks fill when a message needs it
        # (_start_parser): the fast lane may never, and a connection's reader then
        # makes and frees no list (six of them were ~1k instructions a connection).
        self._parser: HttpRequestParser | None = None
        self._state = IDLE
        self._error: ProtocolError | None = None
        self._eof = False
        self._tail: list[bytes] | None = None  # once upgraded (only llhttp upgrades)
        self._tail_taken = False
        self.upgraded = False
        self._seq = 0  # messages begun, to tell one head from the next
        # one feed() call
        self._events: list[Event] | None = None  # each feed() makes its own
        self._body: list[bytes] | None = None
        # one message
        self._url: list[bytes] | None = None
        self._url_len = 0
        self._names: list[bytes] | None = None
        self._values: list[bytes] | None = None
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
        if state is IDLE and self._fast_lane is not None:
            if type(data) is not bytes:
                data = view = bytes(data)
            pos = self._fast(data)
            if pos:
                if pos == len(data) or self._state is CLOSED:
                    return events  # all taken, or the rest follows a closing request
                view = memoryview(data)[pos:]
        try:
            while True:
                try:
                    parser = self._parser
                    if parser is None:
                        parser = self._start_parser()
                    parser.feed_data(view)
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
                    raise translate(exc) from exc
            if self._state is HEAD or (self._state is BODY and self._chunked):
                self._check_incomplete(state, seq, len(data))
        except ProtocolError as exc:
            self._fail(exc, events)
        if self._body:
            self._flush_body()
        return events

    def _start_parser(self) -> HttpRequestParser:
        """llhttp, for what the fast lane does not take, and the lists its callbacks fill."""
        self._tail, self._body, self._url, self._names, self._values = [], [], [], [], []
        self._parser = parser = HttpRequestParser(self)
        return parser

    def _fast(self, data: bytes) -> int:
        """Take the simple requests at the start of ``data`` (see ``fast_lane``); the
        index where llhttp has to go on."""
        scan = self._fast_lane
        native = scan is _scan_request
        events = self._events
        pos, size = 0, len(data)
        while pos < size and self._state is IDLE:
            if native:
                head = _scanner.scan_request(data, pos, self._max_request_line, self._max_header_bytes, self._max_headers)
            else:
                head = scan(data, pos, self._max_request_line, self._max_header_bytes, self._max_headers)
            if head is None:
                break
            method, target, headers, version, keep_alive, length, end = head
            body_end = end + length if length else end
            if body_end > size:
                break  # llhttp streams a body that is still to come
            # what on_message_begin, on_headers_complete, on_body and
            # on_message_complete would have done
            self._seq += 1
            self._stalled = 0
            events.append(_scanner.make_request(method, target, headers, version, keep_alive, length))
            if body_end > end:
                events.append(_scanner.make_data(data[end:body_end]))
            events.append(EMPTY_END)
            self._state = IDLE if keep_alive else CLOSED
            pos = body_end
        return pos

    def feed_eof(self) -> list[Event]:
        """The client closed its side: nothing if between messages, else an error."""
        if self._error is not None:
            raise self._error
        self._eof = True
        if self._state in (IDLE, CLOSED, TUNNEL):
            return []
        self._fail(ProtocolError("connection closed in the middle of a request", 400), [])

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

    def _goto(self, event: str) -> None:
        self._state = goto(REQUEST_STATES, self._state, event)

    # -- httptools callbacks -----------------------------------------------------
    def on_message_begin(self) -> None:
        if self._state is CLOSED:
            raise Stop()
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

        found = group_fields(headers, _FIELDS)
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
        tokens = connection_options(found.get("connection"))
        keep_alive = is_keep_alive(version, tokens)
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
            self._events.append(EMPTY_END)
        if self._tunnel:
            self._goto("end-tunnel")
            self.upgraded = True
        else:
            self._goto("end" if self._keep_alive else "end-close")
        if not self._parser.should_keep_alive():
            # llhttp will refuse what follows ("Data after `Connection: close`")
            # where the reader would not (Proxy-Connection: close); so that the
            # same happens, everything from now on goes to llhttp.
            self._fast_lane = None


def new_request_reader(max_request_line: int, max_header_bytes: int, max_headers: int) -> RequestReader:
    """``RequestReader(max_request_line, max_header_bytes, max_headers)``, made without
    the type call: the engine makes one per client connection, and compiled, the call's
    argument parsing (a tuple, the keyword-only default) cost ~400 instructions of it."""
    reader = RequestReader.__new__(RequestReader)
    reader._setup(max_request_line, max_header_bytes, max_headers, default_fast_lane)
    return reader
