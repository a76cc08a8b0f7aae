"""Simple HTTP/1.1 heads recognised without llhttp: the pure-Python twin (the reference).

Why: llhttp through httptools calls back into Python once per request-line part
and per header field, and the readers rebuild the head from those pieces; for
the common head (a GET from a load generator, a small backend response) that
is most of the cost of a message. ``scan_request`` and ``scan_response`` take
one buffer, and if it starts with a complete head of the *simple subset* below
they return its parsed fields in one go, so the reader can build the event
itself and never show the message to llhttp. Anything else returns None and
the reader takes the llhttp path, which then decides (and raises the right
error, with the right status_hint). None is therefore always a safe answer;
a tuple must equal what the llhttp path would build.

The simple subset (everything outside it is None):

* start line: ``METHOD SP /target SP HTTP/1.x CRLF`` with a method of
  ``METHODS`` and a target of ``TARGET`` bytes starting with "/"; or
  ``HTTP/1.x SP 3DIGIT SP reason CRLF`` with status 200-599 and a reason of
  ``REASON`` bytes (possibly empty, but the SP before it is required).
* field lines: ``name ":" OWS value OWS CRLF``, name of ``TCHAR``, value of
  ``FIELD_VALUE`` (VCHAR, SP, HTAB: no obs-text, no CTL); so no obs-fold (a
  line starting with SP/HTAB has no token name) and no bare CR or LF. Values
  lose leading and trailing SP/HTAB, as ``decode_fields`` does.
* framing and connection fields: see ``REQUEST_KINDS`` and ``RESPONSE_KINDS``.
  Transfer-Encoding, Upgrade, Expect (requests) and Proxy-Connection are left
  to llhttp; at most one Content-Length of 1-15 digits; Connection tokens only
  "close" and "keep-alive"; a response with a body needs a Content-Length.
  Proxy-Connection is refused because llhttp reads it as Connection: after
  "Proxy-Connection: close" it refuses the next message on the connection
  ("Data after `Connection: close`"), which the readers (going by Connection
  only) would not.
* limits are checked as the llhttp path counts them; over a limit is None, and
  the llhttp path raises the 414 or 431.

Both twins take the same steps, under the same names: find the end of the
head, read the start line, read the field lines (``_fields``), then decide
Host, framing and keep-alive. Here each step is one C-level call (``find``, a
regex ``match`` or ``findall`` built from the character sets below), so that
this twin too is cheaper than the llhttp path; the compiled twin
(``_heads.pyx``) runs typed C loops over the bytes instead, with class tables
built from the same constants.
"""

from __future__ import annotations

import re

from lbcore.l7._http1_events import Data, Request, Response

__all__ = ["IMPLEMENTATION", "HeadScanner", "make_data", "make_request", "make_response", "scan_request", "scan_response",
           "scan_response_event"]

IMPLEMENTATION = "pure"


# -- the events of a simple head ---------------------------------------------------------------
# A simple head is never chunked, never an upgrade, never Expect: 100-continue, so
# its event has those fields fixed. The compiled twin fills the compiled event's C
# fields directly, without the constructor; here it is the constructor.


def make_request(method: str, target: str, headers, version: str, keep_alive: bool, content_length):
    """The Request event of a simple head (what the llhttp path builds)."""
    return Request(method, target, headers, version, keep_alive, False, content_length, False, None)


def make_response(status: int, reason: str, headers, version: str, keep_alive: bool, content_length):
    """The Response event of a simple head (what the llhttp path builds)."""
    return Response(status, reason, headers, version, keep_alive, False, content_length)


def make_data(data: bytes):
    """The Data event of body bytes (the readers make one per body piece)."""
    return Data(data)


class HeadScanner:
    """The readers' scans and event makers as methods: the compiled twin's are C
    methods, which its compiled readers call without a Python call each (they hold one
    in a typed global). The same answers as the module's functions."""

    __slots__ = ()

    def scan_request(self, data: bytes, pos: int, max_request_line: int, max_header_bytes: int, max_headers: int):
        return scan_request(data, pos, max_request_line, max_header_bytes, max_headers)

    def scan_response_event(self, data: bytes, pos: int, method: str, max_header_bytes: int, max_headers: int):
        return scan_response_event(data, pos, method, max_header_bytes, max_headers)

    def make_request(self, method: str, target: str, headers, version: str, keep_alive: bool, content_length):
        return make_request(method, target, headers, version, keep_alive, content_length)

    def make_data(self, data: bytes):
        return make_data(data)

# -- what is simple ------------------------------------------------------------------

DIGIT = b"0123456789"
ALPHA = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# RFC 9110 5.6.2 tchar.
TCHAR = b"!#$%&'*+-.^_`|~" + DIGIT + ALPHA
# A conservative subset of what llhttp takes in an origin-form target: no "#"
# (llhttp splits off a fragment), none of "\"<>\\^`{|}" (llhttp refuses some).
TARGET = ALPHA + DIGIT + b"-._~!$&'()*+,;=:@/?%"
# field-vchar and the whitespace allowed inside a value; no obs-text (0x80-0xff).
FIELD_VALUE = bytes(range(0x21, 0x7F)) + b" \t"
# RFC 9112 4 reason-phrase without obs-text.
REASON = FIELD_VALUE
OWS = " \t"

# Request-line methods: the bytes on the wire -> the str the event carries.
METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH")}
VERSIONS = {b"1": "1.1", b"0": "1.0"}  # the minor version digit

# Fields the scans look at, by lower-case name; REFUSED: not simple.
HOST, CONTENT_LENGTH, CONNECTION, REFUSED = 1, 2, 3, 4
REQUEST_KINDS = {
    "host": HOST,
    "content-length": CONTENT_LENGTH,
    "connection": CONNECTION,
    "transfer-encoding": REFUSED,
    "upgrade": REFUSED,
    "expect": REFUSED,
    "proxy-connection": REFUSED,
}
RESPONSE_KINDS = {
    "content-length": CONTENT_LENGTH,
    "connection": CONNECTION,
    "transfer-encoding": REFUSED,
    "upgrade": REFUSED,
    "proxy-connection": REFUSED,
}
MAX_LENGTH_DIGITS = 15  # far below llhttp's uint64 overflow check


def _class(chars: bytes) -> str:
    """A regex character class of exactly these bytes (as latin-1 code points)."""
    return "[" + "".join(f"\\x{c:02x}" for c in sorted(set(chars))) + "]"


# The start lines, each up to the first CRLF (no class here holds CR or LF).
_REQUEST_LINE = re.compile(
    ("(" + "|".join(m.decode() for m in METHODS) + ") (/" + _class(TARGET) + r"*) HTTP/1\.([01])\r\n").encode()
)
_STATUS_LINE = re.compile(("HTTP/1\\.([01]) ([0-9]{3}) (" + _class(REASON) + r"*)\r\n").encode())
# One field line, from the start of a line: the value group starts after the
# leading OWS (the greedy [ \t]* never gives it back on a match) and keeps the
# trailing OWS, which is what llhttp hands over.
_FIELD_LINE = re.compile("^(" + _class(TCHAR) + "+):[ \t]*(" + _class(FIELD_VALUE) + "*)\r\n", re.MULTILINE)


# -- the scans -----------------------------------------------------------------------


def scan_request(data: bytes, pos: int, max_request_line: int, max_header_bytes: int, max_headers: int):
    """(method, target, headers, version, keep_alive, content_length, end) of a simple
    request head at ``data[pos:]``, or None."""
    stop = data.find(b"\r\n\r\n", pos)  # the head is complete, the CRLF CRLF ends at stop + 4
    if stop < 0:
        return None
    line = _REQUEST_LINE.match(data, pos)
    if line is None or line.end() - pos > max_request_line:
        return None
    method, target, minor = line.groups()
    version = VERSIONS[minor]
    fields = _fields(data, line.end() - 2, stop, max_headers, REQUEST_KINDS)
    if fields is None:
        return None
    headers, size, hosts, length, close, keep_alive = fields
    if size > max_header_bytes:
        return None
    # RFC 9112 3.2: one Host in HTTP/1.1; HTTP/1.0 may go without.
    if hosts != 1 and (version == "1.1" or hosts > 1):
        return None
    return (
        METHODS[method],
        target.decode("latin-1"),
        headers,
        version,
        _keep_alive(version, close, keep_alive),
        length,
        stop + 4,
    )


def scan_response(data: bytes, pos: int, method: str, max_header_bytes: int, max_headers: int):
    """(status, reason, headers, version, keep_alive, content_length, end) of a simple
    response head at ``data[pos:]`` answering ``method``, or None."""
    if method == "CONNECT":  # a 2xx starts a tunnel
        return None
    stop = data.find(b"\r\n\r\n", pos)
    if stop < 0 or stop + 4 - pos > max_header_bytes:
        return None
    line = _STATUS_LINE.match(data, pos)
    if line is None:
        return None
    minor, code, reason = line.groups()
    status = int(code)
    if not 200 <= status <= 599:  # 1xx (and 101) are for llhttp
        return None
    version = VERSIONS[minor]
    fields = _fields(data, line.end() - 2, stop, max_headers, RESPONSE_KINDS)
    if fields is None:
        return None
    headers, _size, _hosts, length, close, keep_alive = fields  # the whole head is measured instead
    # RFC 9112 6.3: no body after HEAD, 204, 304; else only Content-Length is
    # simple (a close-delimited body goes the llhttp path).
    if not (method == "HEAD" or status == 204 or status == 304) and length is None:
        return None
    return (
        status,
        reason.decode("latin-1"),
        headers,
        version,
        _keep_alive(version, close, keep_alive),
        length,
        stop + 4,
    )


def scan_response_event(data: bytes, pos: int, method: str, max_header_bytes: int, max_headers: int):
    """(Response, end) of a simple response head at ``data[pos:]`` answering ``method``,
    or None: the event ``make_response`` makes of ``scan_response``'s answer (what the
    response reader's fast lane calls). The compiled twin's event keeps the field
    lines as received and makes its ``headers`` only when asked."""
    head = scan_response(data, pos, method, max_header_bytes, max_headers)
    if head is None:
        return None
    status, reason, headers, version, keep_alive, length, end = head
    return make_response(status, reason, headers, version, keep_alive, length), end


# -- the parts -----------------------------------------------------------------------


def _fields(data: bytes, eol: int, stop: int, max_headers: int, kinds: dict[str, int]):
    """The field lines between the start line's CRLF at ``eol`` and the CRLF CRLF at
    ``stop``: (headers, size, hosts, content_length, close, keep_alive), or None.

    ``size`` is what the llhttp path counts against max_header_bytes: name + value
    (leading OWS off, trailing kept) + 4 per field. ``close`` and ``keep_alive``
    say whether a Connection token was "close" or "keep-alive".
    """
    block = data[eol + 2 : stop + 2].decode("latin-1")  # each line with its CRLF
    pairs = _FIELD_LINE.findall(block)
    count = len(pairs)
    # Each match spans one whole line: so every line matched when there are as
    # many matches as LFs (a bare CR or LF, obs-fold, a bad name or value byte
    # leave a line unmatched).
    if count != block.count("\n") or count > max_headers:
        return None
    headers = []
    size = 4 * count
    hosts = 0
    length = None
    close = keep_alive = False
    for name, raw in pairs:
        size += len(name) + len(raw)
        value = raw.rstrip(OWS)
        kind = kinds.get(name.lower())
        if kind is not None:
            if kind == HOST:
                hosts += 1
            elif kind == CONTENT_LENGTH:
                if length is not None or not 0 < len(value) <= MAX_LENGTH_DIGITS or not value.isdigit():
                    return None
                length = int(value)
            elif kind == CONNECTION:
                tokens = _connection(value)
                if tokens is None:
                    return None
                close = close or tokens[0]
                keep_alive = keep_alive or tokens[1]
            else:
                return None
        headers.append((name, value))
    return tuple(headers), size, hosts, length, close, keep_alive


def _connection(value: str):
    """(close, keep_alive) for the tokens of one Connection value; None if a token
    is neither (empty items are skipped, as RFC 9110 5.6.1 asks)."""
    close = keep_alive = False
    for token in value.split(","):
        token = token.strip(OWS).lower()
        if token == "close":
            close = True
        elif token == "keep-alive":
            keep_alive = True
        elif token:
            return None
    return close, keep_alive


def _keep_alive(version: str, close: bool, keep_alive: bool) -> bool:
    """RFC 9112 9.3, as ``_http1_headers.is_keep_alive``."""
    if close:
        return False
    return version == "1.1" or keep_alive
