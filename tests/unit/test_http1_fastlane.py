"""The readers' fast lane (``lbcore._fastpath.heads``): its twins, and readers with and without it.

The fast lane must be invisible, so most tests here are differential:

* the pure and compiled twins give the same answer for the same bytes (simple
  heads, and the same heads broken at random), and whenever a twin answers,
  llhttp (a reader with ``fast_lane=None``) reads the same head to the same
  event, without an error;
* readers without the fast lane, with the pure twin and with the compiled
  twin give the same events and the same errors (type and status_hint) for
  streams of several messages, some broken, fed whole or cut at random.

The compiled twin is skipped when it is not built, except under CI (env CI
set), where a missing build fails the tests that need it.
"""

from __future__ import annotations

import dataclasses
import itertools
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lbcore._fastpath import USE_EXTENSIONS, heads, rewrite
from lbcore.l7 import _http1_requests, _http1_responses
from lbcore.l7.http1 import (
    Data,
    EndOfMessage,
    ProtocolError,
    Request,
    RequestReader,
    Response,
    ResponseReader,
)

LANES = ["none", "pure", "compiled"]
TWINS = ["pure", "compiled"]
# FASTLANE_EXAMPLES=20000 for a long hunt.
SETTINGS = settings(max_examples=int(os.environ.get("FASTLANE_EXAMPLES", "300")), deadline=None)

GET = b"GET /index.html HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"
NGINX = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.24.0\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 13\r\nConnection: keep-alive\r\n\r\nHello, world!"
)


def twin_module(name: str):
    """The twin called ``name``; a missing compiled build skips, or fails under CI."""
    module = heads.IMPLEMENTATIONS.get(name)
    if module is None:
        message = f"the {name} twin lbcore._fastpath._heads is not built (or LBCORE_NO_EXTENSIONS=1)"
        if os.environ.get("CI") and USE_EXTENSIONS:
            pytest.fail(message + " (CI must build it: cythonize or pip install .)")
        pytest.skip(message)
    return module


def lanes(name: str):
    """(request reader's lane, response reader's lane): ``none`` is the llhttp path only."""
    if name == "none":
        return None, None
    module = twin_module(name)
    return module.scan_request, module.scan_response_event


def use_default_lane(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Make ``name`` the readers' default fast lane for one test (used by test_http1*)."""
    request_lane, response_lane = lanes(name)
    monkeypatch.setattr(_http1_requests, "default_fast_lane", request_lane)
    monkeypatch.setattr(_http1_responses, "default_fast_lane", response_lane)


@pytest.fixture(params=TWINS, scope="module")
def twin(request):
    return twin_module(request.param)


def test_selector() -> None:
    assert heads.IMPLEMENTATION in heads.IMPLEMENTATIONS
    chosen = heads.IMPLEMENTATIONS[heads.IMPLEMENTATION]
    assert heads.scan_request is chosen.scan_request and heads.scan_response is chosen.scan_response
    assert heads.scan_response_event is chosen.scan_response_event
    assert heads.IMPLEMENTATIONS["pure"].IMPLEMENTATION == "pure"
    if os.environ.get("CI") or "compiled" in heads.IMPLEMENTATIONS:
        assert twin_module("compiled").IMPLEMENTATION == "compiled"
    # the readers use the selected twin unless told otherwise
    assert _http1_requests.default_fast_lane is heads.scan_request
    assert _http1_responses.default_fast_lane is heads.scan_response_event
    assert RequestReader()._fast_lane is heads.scan_request
    assert ResponseReader()._fast_lane is heads.scan_response_event


# == the scans, table-driven ========================================================

LIMITS = (8192, 32768, 100)  # max_request_line, max_header_bytes, max_headers


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", ("GET", "/", (("Host", "h"),), "1.1", True, None)),
        (GET, ("GET", "/index.html", (("Host", "localhost:8080"), ("User-Agent", "wrk"), ("Accept", "*/*")),
               "1.1", True, None)),
        (b"POST /a?b=%20&c=d;e HTTP/1.1\r\nhost:\th\r\nContent-Length:  005 \r\nConnection: Close\r\n\r\nhello",
         ("POST", "/a?b=%20&c=d;e", (("host", "h"), ("Content-Length", "005"), ("Connection", "Close")),
          "1.1", False, 5)),
        (b"GET /x HTTP/1.1\r\nHost: h\r\nX-Case:  kept \t \r\nx-case: two\r\nEmpty:\r\nSp:   \r\n\r\n",
         ("GET", "/x", (("Host", "h"), ("X-Case", "kept"), ("x-case", "two"), ("Empty", ""), ("Sp", "")),
          "1.1", True, None)),
        (b"GET / HTTP/1.0\r\n\r\n", ("GET", "/", (), "1.0", False, None)),
        (b"HEAD / HTTP/1.0\r\nConnection: ,keep-alive,\r\n\r\n",
         ("HEAD", "/", (("Connection", ",keep-alive,"),), "1.0", True, None)),
        (b"DELETE /-._~!$&'()*+,;=:@/?% HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, close\r\n\r\n",
         ("DELETE", "/-._~!$&'()*+,;=:@/?%", (("Host", "h"), ("Connection", "keep-alive, close")),
          "1.1", False, None)),
        (b"PATCH / HTTP/1.1\r\nHost: h\r\nX: a\tb \"c\" \x7e\r\nContent-Length: 0\r\n\r\n",
         ("PATCH", "/", (("Host", "h"), ("X", 'a\tb "c" ~'), ("Content-Length", "0")), "1.1", True, 0)),
    ],
)
def test_scan_request_accepts(twin, data, expected) -> None:
    end = data.find(b"\r\n\r\n") + 4
    assert twin.scan_request(data, 0, *LIMITS) == (*expected, end)
    # the same head further into a buffer
    assert twin.scan_request(b"xyz" + data, 3, *LIMITS) == (*expected, end + 3)
    # and llhttp reads it alike
    assert llhttp_request(data, LIMITS) == request_event((*expected, end))


H = b"Host: h\r\n"


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: h\r\n",  # incomplete
        b"GET / HTTP/1.1\r\nHost: h\r\n\r",
        b"",
        b"\r\nGET / HTTP/1.1\r\n" + H + b"\r\n",  # leading empty line
        b"get / HTTP/1.1\r\n" + H + b"\r\n",
        b"TRACE / HTTP/1.1\r\n" + H + b"\r\n",
        b"CONNECT h:443 HTTP/1.1\r\n" + H + b"\r\n",
        b"GET  / HTTP/1.1\r\n" + H + b"\r\n",
        b"GET /  HTTP/1.1\r\n" + H + b"\r\n",
        b"GET / HTTP/1.1 \r\n" + H + b"\r\n",
        b"GET * HTTP/1.1\r\n" + H + b"\r\n",
        b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n",
        b"GET http://h/ HTTP/1.1\r\n" + H + b"\r\n",
        b"GET /a#b HTTP/1.1\r\n" + H + b"\r\n",
        b"GET /a|b HTTP/1.1\r\n" + H + b"\r\n",
        b"GET /a\"b HTTP/1.1\r\n" + H + b"\r\n",
        b"GET /\xe9 HTTP/1.1\r\n" + H + b"\r\n",
        b"GET / HTTP/1.2\r\n" + H + b"\r\n",
        b"GET / HTTP/2.0\r\n" + H + b"\r\n",
        b"GET / http/1.1\r\n" + H + b"\r\n",
        b"GET /\r\n" + H + b"\r\n",
        b"GET / HTTP/1.1\n" + H + b"\r\n",
        b"GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n",  # bare LF
        b"GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n",  # bare CR
        b"GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n",  # obs-fold
        b"GET / HTTP/1.1\r\nHost: h\r\n\tfolded\r\n\r\n",
        b"GET / HTTP/1.1\r\n Host: h\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : h\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX(Y): v\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\n: v\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX: caf\xe9\r\n\r\n",  # obs-text
        b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x7fb\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x0bb\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",  # no Host
        b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\ntransfer-encoding: identity\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
        b"GET / HTTP/1.1\r\nHost: h\r\nProxy-Connection: close\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1, 1\r\n\r\nx",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +1\r\n\r\nx",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1234567890123456\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close, x-private\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep - alive\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: te\r\n\r\n",
    ],
)
def test_scan_request_declines(twin, data) -> None:
    assert twin.scan_request(data, 0, *LIMITS) is None


def test_the_scanners_makers_make_the_functions_events(twin) -> None:
    scanner = twin.HeadScanner()
    args = ("GET", "/a", (("Host", "h"),), "1.1", True, None)
    assert scanner.make_request(*args) == twin.make_request(*args)
    assert scanner.make_request("POST", "/b", (), "1.0", False, 5) == twin.make_request("POST", "/b", (), "1.0", False, 5)
    assert scanner.make_data(b"body") == twin.make_data(b"body")
    if twin.IMPLEMENTATION == "pure":
        return
    # Compiled, None where bytes are typed would be read as bytes: refused, as the
    # module functions refuse it (``not None``).
    for call in (lambda: scanner.make_data(None), lambda: scanner.scan_request(None, 0, 10, 10, 10),
                 lambda: scanner.scan_response_event(None, 0, "GET", 10, 10)):
        with pytest.raises(TypeError):
            call()


@pytest.mark.parametrize("mode", ["line", "bytes", "count"])
def test_scan_request_limits_are_llhttps(twin, mode) -> None:
    data = b"GET /" + b"a" * 84 + b" HTTP/1.1\r\n" + b"".join(b"X-%02d: v \r\n" % i for i in range(10)) + H + b"\r\n"
    # request line 100 bytes; fields name + value + 4, where the value keeps its
    # trailing OWS but not its leading one (as llhttp hands it over)
    limits = (100, 10 * (4 + 2 + 4) + (4 + 1 + 4), 11)
    assert twin.scan_request(data, 0, *limits) is not None
    tight = list(limits)
    tight[["line", "bytes", "count"].index(mode)] -= 1
    assert twin.scan_request(data, 0, *tight) is None
    with pytest.raises(ProtocolError) as info:
        RequestReader(max_request_line=tight[0], max_header_bytes=tight[1], max_headers=tight[2],
                      fast_lane=None).feed(data)
    assert info.value.status_hint == (414 if mode == "line" else 431)


@pytest.mark.parametrize(
    "data, method, expected",
    [
        (NGINX, "GET", (200, "OK", (("Server", "nginx/1.24.0"), ("Date", "Mon, 01 Jan 2024 00:00:00 GMT"),
                                    ("Content-Type", "text/plain"), ("Content-Length", "13"),
                                    ("Connection", "keep-alive")), "1.1", True, 13)),
        (b"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", "GET",
         (200, "", (("Content-Length", "0"),), "1.1", True, 0)),
        (b"HTTP/1.1 404  Not\tFound \r\ncontent-length:\t2\t\r\n\r\nno", "POST",
         (404, " Not\tFound ", (("content-length", "2"),), "1.1", True, 2)),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", "GET", (200, "OK", (("Content-Length", "1"),),
                                                             "1.0", False, 1)),
        (b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\nx", "GET",
         (200, "OK", (("Connection", "Keep-Alive"), ("Content-Length", "1")), "1.0", True, 1)),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", "HEAD",
         (200, "OK", (("Content-Length", "1234"),), "1.1", True, 1234)),
        (b"HTTP/1.1 200 OK\r\n\r\n", "HEAD", (200, "OK", (), "1.1", True, None)),
        (b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n", "GET",
         (204, "No Content", (("Connection", "close"),), "1.1", False, None)),
        (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\nHost: not-special\r\nExpect: x\r\n\r\n", "GET",
         (304, "Not Modified", (("Content-Length", "7"), ("Host", "not-special"), ("Expect", "x")),
          "1.1", True, 7)),
        (b"HTTP/1.1 599 X\r\nContent-Length: 0\r\n\r\n", "GET",
         (599, "X", (("Content-Length", "0"),), "1.1", True, 0)),
    ],
)
def test_scan_response_accepts(twin, data, method, expected) -> None:
    end = data.find(b"\r\n\r\n") + 4
    assert twin.scan_response(data, 0, method, 65536, 200) == (*expected, end)
    assert twin.scan_response(b"\r\n" + data, 2, method, 65536, 200) == (*expected, end + 2)
    assert llhttp_response(data, method, (65536, 200)) == response_event((*expected, end))
    assert_event_scan_agrees(twin, (*expected, end), data, 0, method, (65536, 200))


@pytest.mark.parametrize("rewrite_twin", sorted(rewrite.IMPLEMENTATIONS))
@pytest.mark.parametrize(
    "fields, forwarded",
    [
        # hop-by-hop fields dropped, values trimmed, names as sent
        (b"Server: x\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n"
         b"x-a:  b \t\r\nTrailer: X\r\nContent-Length: 0\r\n",
         b"Server: x\r\nx-a: b\r\nTrailer: X\r\nContent-Length: 0\r\n"),
        # "Connection: close" names a field "close", which goes too (the general loop)
        (b"Close: 1\r\nConnection: close\r\nCLOSE: 2\r\nContent-Length: 0\r\nX: \r\n",
         b"Content-Length: 0\r\nX: \r\n"),
        # a "close" field without "Connection: close" stays
        (b"Close: 1\r\nContent-Length: 0\r\n", b"Close: 1\r\nContent-Length: 0\r\n"),
        (b"", b""),
    ],
)
def test_field_lines_kept_by_the_event_are_forwarded_as_its_headers(twin, rewrite_twin, fields, forwarded) -> None:
    data = b"HTTP/1.1 204 No Content\r\n" + fields + b"\r\n"
    event, end = twin.scan_response_event(data, 0, "GET", 65536, 100)
    assert end == len(data)
    twin_rewrite = rewrite.IMPLEMENTATIONS[rewrite_twin]
    keep_alive = b"connection: close" not in fields.lower()
    framing = twin_rewrite.response_head_for_client(event, request_method="GET", client_version="1.1",
                                                    client_keep_alive=True, extra_headers=(("Set-Cookie", "s=1"),))
    assert framing.head == (b"HTTP/1.1 204 No Content\r\n" + forwarded + b"Set-Cookie: s=1\r\n"
                            + (b"" if keep_alive else b"Connection: close\r\n") + b"\r\n")
    assert (framing.keep_alive, framing.chunked, framing.has_body) == (keep_alive, False, False)
    assert event == make_pure_event(data)


def make_pure_event(data: bytes) -> Response:
    status, reason, headers, version, keep_alive, length, _ = twin_module("pure").scan_response(
        data, 0, "GET", 65536, 100)
    return Response(status, reason, headers, version, keep_alive, False, length)


R = b"HTTP/1.1 200 OK\r\n"


@pytest.mark.parametrize(
    "data, method",
    [
        (R + b"Content-Length: 0\r\n", "GET"),  # incomplete
        (R + b"\r\n", "GET"),  # close-delimited body
        (R + b"Content-Type: text/plain\r\n\r\nbody", "GET"),
        (R + b"Content-Length: 0\r\n\r\n", "CONNECT"),
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n", "GET"),
        (b"HTTP/1.1 100 Continue\r\n\r\n", "GET"),
        (b"HTTP/1.1 199 X\r\n\r\n", "HEAD"),
        (b"HTTP/1.1 600 X\r\nContent-Length: 0\r\n\r\n", "GET"),
        (b"HTTP/1.1 020 X\r\nContent-Length: 0\r\n\r\n", "GET"),
        (b"HTTP/1.1 2000 X\r\nContent-Length: 0\r\n\r\n", "GET"),
        (b"HTTP/1.1 20a X\r\nContent-Length: 0\r\n\r\n", "GET"),
        (b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", "GET"),  # no SP after the code
        (b"HTTP/1.1  200 OK\r\nContent-Length: 0\r\n\r\n", "GET"),
        (b"HTTP/1.2 200 OK\r\nContent-Length: 0\r\n\r\n", "GET"),
        (b"HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n", "GET"),
        (b"\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "GET"),
        (b"HTTP/1.1 200 O\x01K\r\nContent-Length: 0\r\n\r\n", "GET"),
        (b"HTTP/1.1 200 Caf\xe9\r\nContent-Length: 0\r\n\r\n", "GET"),  # obs-text in the reason
        (R + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "GET"),
        (R + b"Transfer-Encoding: chunked\r\n\r\n", "HEAD"),
        (R + b"Upgrade: h2c\r\nContent-Length: 0\r\n\r\n", "GET"),
        (R + b"Proxy-Connection: close\r\nContent-Length: 0\r\n\r\n", "GET"),
        (R + b"Content-Length: 1\r\nContent-Length: 1\r\n\r\nx", "GET"),
        (R + b"Content-Length: 1\r\nContent-Length: 1\r\n\r\n", "HEAD"),
        (R + b"Content-Length: x\r\n\r\n", "HEAD"),
        (R + b"Connection: upgrade\r\nContent-Length: 0\r\n\r\n", "GET"),
        (R + b"X: a\r\n b\r\nContent-Length: 0\r\n\r\n", "GET"),
        (R + b"X: a\nContent-Length: 0\r\n\r\n", "GET"),
        (R + b"X Y: a\r\nContent-Length: 0\r\n\r\n", "GET"),
        (R + b"X: \x80\r\nContent-Length: 0\r\n\r\n", "GET"),
        (b"HTTP/1.1 200 OK\nContent-Length: 0\n\n", "GET"),
    ],
)
def test_scan_response_declines(twin, data, method) -> None:
    assert twin.scan_response(data, 0, method, 65536, 200) is None


def test_scan_response_limits_are_the_readers(twin) -> None:
    data = R + b"".join(b"X-%02d: v\r\n" % i for i in range(10)) + b"Content-Length: 0\r\n\r\n"
    assert twin.scan_response(data, 0, "GET", len(data), 11) is not None
    assert twin.scan_response(data, 0, "GET", len(data) - 1, 11) is None
    assert twin.scan_response(data, 0, "GET", len(data), 10) is None
    for limits in [(len(data) - 1, 11), (len(data), 10)]:
        with pytest.raises(ProtocolError) as info:
            llhttp_response(data, "GET", limits)
        assert info.value.status_hint == 431


# == the oracle: llhttp, through a reader without the fast lane ========================


def request_event(head) -> Request:
    method, target, headers, version, keep_alive, length, _ = head
    return Request(method, target, headers, version, keep_alive, False, length, False, None)


def response_event(head) -> Response:
    status, reason, headers, version, keep_alive, length, _ = head
    return Response(status, reason, headers, version, keep_alive, False, length)


def llhttp_request(data: bytes, limits) -> Request:
    """The Request llhttp reads from ``data`` (the event comes with the end of the head)."""
    reader = RequestReader(max_request_line=limits[0], max_header_bytes=limits[1], max_headers=limits[2],
                           fast_lane=None)
    return reader.feed(data)[0]


def llhttp_response(data: bytes, method: str, limits) -> Response:
    """The Response llhttp reads from ``data``, a reply to ``method``."""
    reader = ResponseReader(max_header_bytes=limits[0], max_headers=limits[1], fast_lane=None)
    reader.expect(method)
    return reader.feed(data)[0]


# == generated heads ===============================================================

TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
VCHAR = "".join(chr(c) for c in range(0x21, 0x7F))
TARGET = "abcXYZ019-._~!$&'()*+,;=:@/?%"
# Names the scans look at, in several spellings, with values that mean something to them.
SPECIAL = ["Host", "host", "HOST", "Content-Length", "content-length", "Connection", "CONNECTION",
           "Transfer-Encoding", "Upgrade", "Expect", "Proxy-Connection", "TE", "Keep-Alive", "Trailer"]
SPECIAL_VALUES = ["close", "keep-alive", "Keep-Alive", "upgrade", "close, keep-alive", " , close ,", ",,", "",
                  "keep-alive,x", "chunked", "0", "7", "00012", "1, 1", "-1", "websocket", "100-continue", "h"]
ows = st.sampled_from(["", " ", "\t", "  ", " \t "])
plain_fields = st.tuples(st.text(TCHAR, min_size=1, max_size=10), st.text(VCHAR + " \t", max_size=16))
special_fields = st.tuples(st.sampled_from(SPECIAL), st.sampled_from(SPECIAL_VALUES))


@st.composite
def field_lines(draw, max_size=6) -> bytes:
    lines = []
    for name, value in draw(st.lists(st.one_of(*[plain_fields] * 5, special_fields), max_size=max_size)):
        value = value.strip(" \t")
        lines.append(f"{name}:{draw(ows)}{value}{draw(ows)}\r\n")
    return "".join(lines).encode("latin-1")


@st.composite
def request_heads(draw) -> bytes:
    """Mostly simple request heads (each choice leans to the simple subset)."""
    method = draw(st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "get"]))
    target = draw(st.one_of(*[st.text(TARGET, max_size=20).map(lambda t: "/" + t)] * 3,
                            st.sampled_from(["*", "/a#b", "/a b", "http://h/"])))
    version = draw(st.sampled_from(["1.1", "1.1", "1.0"]))
    fields = draw(field_lines())
    host = draw(st.sampled_from([b"Host: h\r\n"] * 4 + [b"", b"host:x\r\nHost: y\r\n"]))
    return f"{method} {target} HTTP/{version}\r\n".encode() + host + fields + b"\r\n"


@st.composite
def response_heads(draw) -> bytes:
    """Mostly simple response heads."""
    version = draw(st.sampled_from(["1.1", "1.1", "1.0"]))
    status = draw(st.one_of(st.sampled_from([200, 204, 304, 404, 503]), st.sampled_from([101, 100, 103, 199, 600]),
                            st.integers(200, 599), st.integers(0, 999)))
    reason = draw(st.text(VCHAR + " \t", max_size=12))
    fields = draw(field_lines())
    length = draw(st.sampled_from([b"Content-Length: 5\r\n"] * 3 + [b""]))
    return f"HTTP/{version} {status} {reason}\r\n".encode("latin-1") + length + fields + b"\r\n"


@st.composite
def mutated(draw, data: bytes) -> bytes:
    """``data`` with a few random edits: a byte changed, one of the bytes that matter
    inserted, a byte dropped, or the end cut off."""
    for _ in range(draw(st.integers(0, 3))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        edit = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if edit == "flip":
            data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
        elif edit == "insert":
            byte = draw(st.sampled_from([b"\r", b"\n", b" ", b"\t", b"\x7f", b"\x80", b":", b",", b"\r\n"]))
            data = data[:at] + byte + data[at:]
        elif edit == "delete":
            data = data[:at] + data[at + 1 :]
        else:
            data = data[:at]
    return data


limits = st.tuples(st.integers(10, 120), st.integers(0, 300), st.integers(0, 12))


def agree(twin, scan: str, *args):
    """The twin's answer, checked against the pure twin's (the reference), and against
    its HeadScanner's method of the same name (the compiled readers' C call)."""
    answer = getattr(twin, scan)(*args)
    if hasattr(twin.HeadScanner, scan):
        assert getattr(twin.HeadScanner(), scan)(*args) == answer
    if twin.IMPLEMENTATION != "pure":
        assert answer == getattr(twin_module("pure"), scan)(*args)
    return answer


@SETTINGS
@given(data=st.data(), prefix=st.binary(max_size=4), limits=limits)
def test_scan_request_generated(twin, data, prefix, limits) -> None:
    head = data.draw(request_heads())
    if data.draw(st.booleans()):
        head = data.draw(mutated(head))
    buffer = prefix + head + data.draw(st.binary(max_size=8))
    answer = agree(twin, "scan_request", buffer, len(prefix), *limits)
    if answer is not None:  # llhttp reads it alike
        assert llhttp_request(buffer[len(prefix) : answer[-1]], limits) == request_event(answer)


@SETTINGS
@given(data=st.data(), prefix=st.binary(max_size=4),
       method=st.sampled_from(["GET", "HEAD", "POST", "CONNECT"]),
       limits=st.tuples(st.integers(0, 300), st.integers(0, 12)))
def test_scan_response_generated(twin, data, prefix, method, limits) -> None:
    head = data.draw(response_heads())
    if data.draw(st.booleans()):
        head = data.draw(mutated(head))
    buffer = prefix + head + data.draw(st.binary(max_size=8))
    answer = agree(twin, "scan_response", buffer, len(prefix), method, *limits)
    if answer is not None:
        assert llhttp_response(buffer[len(prefix) : answer[-1]], method, limits) == response_event(answer)
    assert_event_scan_agrees(twin, answer, buffer, len(prefix), method, limits)


def assert_event_scan_agrees(twin, answer, buffer: bytes, pos: int, method: str, limits) -> None:
    """scan_response_event answers as make_response of scan_response's answer would, and
    an event that kept its field lines gives the same head to the client as one built
    from its headers."""
    scanned = twin.scan_response_event(buffer, pos, method, *limits)
    by_scanner = twin.HeadScanner().scan_response_event(buffer, pos, method, *limits)
    if answer is None:
        assert scanned is None and by_scanner is None
        return
    assert by_scanner[1] == scanned[1] and by_scanner[0] == scanned[0]
    event, end = scanned
    assert end == answer[-1]
    expected = response_event(answer)
    for method_seen, version, keep_alive in [(method, "1.1", True), ("HEAD", "1.0", True), (method, "1.1", False)]:
        kept = rewrite.response_head_for_client(event, request_method=method_seen, client_version=version,
                                                client_keep_alive=keep_alive, extra_headers=(("X-Extra", "1"),))
        built = rewrite.response_head_for_client(expected, request_method=method_seen, client_version=version,
                                                 client_keep_alive=keep_alive, extra_headers=(("X-Extra", "1"),))
        assert (kept.head, kept.keep_alive, kept.chunked, kept.has_body) == (
            built.head, built.keep_alive, built.chunked, built.has_body)
    # Compared last: comparing makes the compiled event's headers from its lines.
    assert type(event) is Response and event == expected and event.headers == answer[2]


# == readers with and without the fast lane =========================================


def merge(events) -> list:
    """Events with adjacent Data joined, so that splitting does not matter."""
    out: list = []
    for event in events:
        if isinstance(event, Data) and out and isinstance(out[-1], Data):
            out[-1] = Data(out[-1].data + event.data)
        else:
            out.append(event)
    return out


def outcome(reader, chunks) -> tuple:
    """(merged events, the error as (type, status_hint) or None, tail after an upgrade)."""
    events: list = []
    error = None
    try:
        for chunk in chunks:
            events += reader.feed(chunk)
        events += reader.feed_eof()
    except ProtocolError as exc:
        events += exc.events
        error = (type(exc), exc.status_hint)
    tail = reader.take_tail() if reader.upgraded else None
    return merge(events), error, tail


@st.composite
def cuts(draw, data: bytes, boundaries: list[int]) -> list[bytes]:
    """``data`` whole, or cut at random points, some of them where a message ends
    (a feed that starts with a message is where the fast lane comes in)."""
    if draw(st.booleans()):
        return [data]
    points = set(draw(st.lists(st.integers(0, len(data)), max_size=6)))
    if boundaries and draw(st.booleans()):
        points |= set(draw(st.lists(st.sampled_from(boundaries), min_size=1, max_size=len(boundaries))))
    points = sorted({p for p in points if p <= len(data)} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def boundaries(messages: list[bytes]) -> list[int]:
    ends, at = [], 0
    for message in messages:
        at += len(message)
        ends.append(at)
    return ends


@st.composite
def request_messages(draw) -> bytes:
    kind = draw(st.sampled_from(["get", "get", "length", "length", "chunked", "close", "http10", "upgrade", "proxy",
                                 "proxy", "odd"]))
    target = "/" + draw(st.text(TARGET, max_size=12))
    extra = draw(field_lines(max_size=3)) if draw(st.booleans()) else b""
    head = f"GET {target} HTTP/1.1\r\nHost: h\r\n".encode() + extra
    if kind == "length":
        body = draw(st.binary(max_size=40))
        message = b"POST %b HTTP/1.1\r\nHost: h\r\n%bContent-Length: %d\r\n\r\n%b" % (
            target.encode(), extra, len(body), body)
    elif kind == "chunked":
        message = head + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: v\r\n\r\n"
    elif kind == "close":
        message = head + b"Connection: close\r\n\r\n"
    elif kind == "http10":
        keep = draw(st.sampled_from([b"", b"Connection: keep-alive\r\n"]))
        message = b"GET / HTTP/1.0\r\n" + keep + extra + b"\r\n"
    elif kind == "upgrade":
        message = head + b"Connection: upgrade\r\nUpgrade: websocket\r\n\r\n"
    elif kind == "proxy":  # llhttp reads it as Connection: close, the reader does not
        message = head + b"Proxy-Connection: " + draw(st.sampled_from([b"close", b"keep-alive"])) + b"\r\n\r\n"
    elif kind == "odd":
        message = draw(request_heads())
    else:
        message = head + b"\r\n"
    if draw(st.integers(0, 9)) == 0:
        message = b"\r\n" + message
    return message


@st.composite
def response_messages(draw) -> tuple[str, bytes]:
    method = draw(st.sampled_from(["GET", "GET", "GET", "HEAD", "POST", "CONNECT"]))
    status = draw(st.sampled_from([200, 200, 200, 204, 304, 404, 101, 100, 503]))
    extra = draw(field_lines(max_size=3)) if draw(st.booleans()) else b""
    framing = draw(st.sampled_from(["length", "length", "chunked", "none", "close", "http10", "proxy"]))
    body = draw(st.binary(max_size=40))
    head = b"HTTP/1.1 %d Reason\r\n" % status + extra
    no_body = method == "HEAD" or status in (204, 304) or status < 200
    if framing == "length":
        message = head + b"Content-Length: %d\r\n\r\n" % len(body) + (b"" if no_body else body)
    elif framing == "chunked":
        message = head + b"Transfer-Encoding: chunked\r\n\r\n" + (b"" if no_body else b"2\r\nab\r\n0\r\n\r\n")
    elif framing == "close":
        message = head + b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + (b"" if no_body else body)
    elif framing == "proxy":
        message = head + b"Proxy-Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
        message += b"" if no_body else body
    elif framing == "http10":
        message = b"HTTP/1.0 %d OK\r\nConnection: keep-alive\r\nContent-Length: %d\r\n\r\n" % (status, len(body))
        message += b"" if no_body else body
    else:
        message = head + b"\r\n" + (b"" if no_body else body)
    if draw(st.integers(0, 9)) == 0:
        message = b"\r\n" + message
    return method, message


def run_requests(lane: str, chunks, limits) -> tuple:
    reader = RequestReader(max_request_line=limits[0], max_header_bytes=limits[1], max_headers=limits[2],
                           fast_lane=lanes(lane)[0])
    return outcome(reader, chunks)


def run_responses(lane: str, methods, chunks, limits) -> tuple:
    reader = ResponseReader(max_header_bytes=limits[0], max_headers=limits[1], fast_lane=lanes(lane)[1])
    for method in methods:
        reader.expect(method)
    return outcome(reader, chunks)


READER_LIMITS = st.one_of(st.just((8192, 32768, 100)), st.tuples(st.integers(20, 100), st.integers(10, 200),
                                                                   st.integers(1, 8)))


@pytest.mark.parametrize("lane", TWINS)
@SETTINGS
@given(data=st.data(), limits=READER_LIMITS)
def test_request_readers_agree(lane, data, limits) -> None:
    messages = data.draw(st.lists(request_messages(), min_size=1, max_size=5))
    wire = b"".join(messages)
    if data.draw(st.integers(0, 3)) == 0:
        wire = data.draw(mutated(wire))
    chunks = data.draw(cuts(wire, boundaries(messages)))
    assert run_requests(lane, chunks, limits) == run_requests("none", chunks, limits)


@pytest.mark.parametrize("lane", TWINS)
@SETTINGS
@given(data=st.data(), limits=READER_LIMITS)
def test_response_readers_agree(lane, data, limits) -> None:
    pipeline = data.draw(st.lists(response_messages(), min_size=1, max_size=5))
    methods = [method for method, _ in pipeline]
    wire = b"".join(message for _, message in pipeline)
    if data.draw(st.integers(0, 3)) == 0:
        wire = data.draw(mutated(wire))
    chunks = data.draw(cuts(wire, boundaries([message for _, message in pipeline])))
    assert run_responses(lane, methods, chunks, limits[1:]) == run_responses("none", methods, chunks, limits[1:])


# == the readers' fast paths, by hand ===============================================


@pytest.mark.parametrize("lane", LANES)
def test_pipelined_requests_then_a_partial_one(lane) -> None:
    reader = RequestReader(fast_lane=lanes(lane)[0])
    body = b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
    events = reader.feed(GET + body + GET + b"POST /q HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nab")
    assert [type(e) for e in events] == [Request, EndOfMessage, Request, Data, EndOfMessage, Request, EndOfMessage,
                                         Request, Data]
    assert events[3] == Data(b"hello") and events[8] == Data(b"ab")
    assert reader.feed(b"cd" + GET) == [Data(b"cd"), EndOfMessage(), events[0], EndOfMessage()]
    assert reader.feed_eof() == []


@pytest.mark.parametrize("lane", LANES)
def test_a_closing_request_ends_the_fast_lane_too(lane) -> None:
    reader = RequestReader(fast_lane=lanes(lane)[0])
    events = reader.feed(GET + b"GET / HTTP/1.0\r\n\r\n" + b"garbage \x00\r\n\r\n")
    assert [e.http_version for e in events if isinstance(e, Request)] == ["1.1", "1.0"]
    assert reader.feed(GET) == [] and reader.feed_eof() == []


@pytest.mark.parametrize("lane", LANES)
def test_requests_of_any_bytes_like_type(lane) -> None:
    reader = RequestReader(fast_lane=lanes(lane)[0])
    assert reader.feed(bytearray(GET))[0].target == "/index.html"
    assert reader.feed(memoryview(GET + GET)[: len(GET)])[0].target == "/index.html"


@pytest.mark.parametrize("lane", LANES)
def test_a_long_body_goes_direct(lane) -> None:
    body = bytes(range(256)) * 4096  # 1 MiB
    reader = ResponseReader(fast_lane=lanes(lane)[1])
    reader.expect("GET")
    reader.expect("HEAD")
    wire = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body + b"HTTP/1.1 200 OK\r\n\r\n"
    events = []
    for at in range(0, len(wire), 65536):
        chunk_events = reader.feed(wire[at : at + 65536])
        assert sum(isinstance(e, Data) for e in chunk_events) <= 1  # one Data per feed
        events += chunk_events
    events = merge(events)
    assert events == [Response(200, "OK", (("Content-Length", str(len(body))),), "1.1", True, False, len(body)),
                      Data(body), EndOfMessage(), Response(200, "OK", (), "1.1", True, False, None), EndOfMessage()]
    assert reader.feed_eof() == []


@pytest.mark.parametrize("lane", LANES)
def test_a_response_body_cut_short(lane) -> None:
    reader = ResponseReader(fast_lane=lanes(lane)[1])
    reader.expect("GET")
    assert reader.feed(NGINX[:-3]) == [
        Response(200, "OK", llhttp_response(NGINX, "GET", (65536, 200)).headers, "1.1", True, False, 13),
        Data(b"Hello, wor"),
    ]
    with pytest.raises(ProtocolError) as info:
        reader.feed_eof()
    assert info.value.status_hint == 400


@pytest.mark.parametrize("lane", LANES)
@pytest.mark.parametrize("split", [False, True])
def test_after_proxy_connection_close_llhttp_has_the_last_word(lane, split) -> None:
    # llhttp reads Proxy-Connection as Connection and refuses any message after
    # "close"; the readers go by Connection only. A simple message after such a
    # one, in the same feed or a later one, must fail as it does without the
    # fast lane.
    first = b"GET / HTTP/1.1\r\nHost: h\r\nProxy-Connection: close\r\n\r\n"
    reader = RequestReader(fast_lane=lanes(lane)[0])
    chunks = [first, GET] if split else [first + GET]
    events, error, _ = outcome(reader, chunks)
    assert [type(e) for e in events] == [Request, EndOfMessage] and error == (ProtocolError, 400)
    first = b"HTTP/1.1 200 OK\r\nProxy-Connection: close\r\nContent-Length: 1\r\n\r\nx"
    reader = ResponseReader(fast_lane=lanes(lane)[1])
    reader.expect("GET")
    reader.expect("GET")
    chunks = [first, NGINX] if split else [first + NGINX]
    events, error, _ = outcome(reader, chunks)
    assert [type(e) for e in events] == [Response, Data, EndOfMessage] and error == (ProtocolError, 400)


WHOLE_RESPONSES = [
    ("GET", NGINX),
    ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n"),
    ("GET", b"HTTP/1.1 204 No Content\r\n\r\n"),
    ("GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n"),
    ("GET", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    ("GET", b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"),
    ("GET", b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"),
    ("GET", NGINX[:-1]),  # body short: not whole
    ("GET", NGINX + b"!"),  # a byte more than the body: not whole
    ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nx"),  # bytes after a bodiless head
]


@pytest.mark.parametrize("lane", LANES)
@pytest.mark.parametrize("method,wire", WHOLE_RESPONSES)
def test_a_response_in_one_read_reads_as_with_llhttp(lane, method, wire) -> None:
    # One read holding exactly one simple response takes a shortcut through the
    # reader; the events, the error and the state after it are llhttp's.
    def run(lane_name):
        reader = ResponseReader(fast_lane=lanes(lane_name)[1])
        reader.expect(method)
        reader.expect("GET")
        return outcome(reader, [wire, NGINX])

    assert run(lane) == run("none")


@pytest.mark.parametrize("lane", LANES)
def test_a_stray_cr_before_a_request(lane) -> None:
    # llhttp skips CR and LF before a request line, across feeds too.
    reader = RequestReader(fast_lane=lanes(lane)[0])
    events = reader.feed(GET + b"\r") + reader.feed(GET) + reader.feed(b"\n" + GET)
    assert [type(e) for e in events] == [Request, EndOfMessage] * 3


# == the events of simple heads ======================================================


@settings(max_examples=200, deadline=None)
@given(
    method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]),
    target=st.text(alphabet="/abc%?=&", min_size=1, max_size=20),
    headers=st.lists(st.tuples(st.text(alphabet="Hostx-", min_size=1, max_size=8), st.text(max_size=10)),
                     max_size=4).map(tuple),
    version=st.sampled_from(["1.0", "1.1"]),
    keep_alive=st.booleans(),
    length=st.none() | st.integers(0, 10**12),
    status=st.integers(200, 599),
    reason=st.text(max_size=12),
)
def test_event_makers_build_what_the_constructors_build(twin, method, target, headers, version, keep_alive,
                                                        length, status, reason):
    request = twin.make_request(method, target, headers, version, keep_alive, length)
    assert type(request) is Request
    assert request == Request(method, target, headers, version, keep_alive, False, length, False, None)
    response = twin.make_response(status, reason, headers, version, keep_alive, length)
    assert type(response) is Response
    assert response == Response(status, reason, headers, version, keep_alive, False, length)
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.method = "POST"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        response.status = 500  # type: ignore[misc]
    body = reason.encode()
    data = twin.make_data(body)
    assert type(data) is Data and data == Data(body) and data.data is body
    with pytest.raises(dataclasses.FrozenInstanceError):
        data.data = b"x"  # type: ignore[misc]


def _text_slot(text: bytes, slots: int = 512) -> int:
    """The compiled twin's cache slot for a short text (FNV-1a of its bytes)."""
    h = 2166136261
    for byte in text:
        h = ((h ^ byte) * 16777619) & 0xFFFFFFFF
    return h & (slots - 1)


def test_texts_that_share_a_cache_slot_stay_apart(twin) -> None:
    # The compiled twin shares recent short texts through a hashed cache: texts of one
    # slot (and of one length) must still come back as themselves, in any order,
    # and a repeated one as an equal string.
    by_slot: dict[int, list[bytes]] = {}
    for i in range(20000):
        value = b"v%05d" % i
        by_slot.setdefault(_text_slot(value), []).append(value)
    values = next(group for group in by_slot.values() if len(group) >= 3)[:3]
    long_value = b"x" * 41  # past the cache's length: made each time
    for value in [*values, *values[::-1], values[0], values[0], long_value, long_value]:
        head = b"HTTP/1.1 200 OK\r\nX-Value: " + value + b"\r\nContent-Length: 0\r\n\r\n"
        status, reason, headers, *_ = twin.scan_response(head, 0, "GET", 65536, 100)
        assert (status, reason) == (200, "OK")
        assert headers == (("X-Value", value.decode()), ("Content-Length", "0"))
        request = twin.scan_request(b"GET /" + value + b" HTTP/1.1\r\nHost: " + value + b"\r\n\r\n", 0, *LIMITS)
        assert request[1] == "/" + value.decode() and request[2] == (("Host", value.decode()),)


def test_every_byte_at_every_place_of_a_long_value(twin) -> None:
    # The compiled twin reads values eight bytes at a time: each byte value, at each
    # offset of a value longer than a few words (and of the last line, whose words
    # end before the head's CRLF CRLF), is accepted or refused as the pure twin does.
    value = b"abcdefghijklmnopqrstuvwxyz0123"
    for last in (False, True):
        for at in range(len(value)):
            for byte in range(256):
                bad = value[:at] + bytes([byte]) + value[at + 1 :]
                fields = b"X-Long: " + bad + b"\r\n"
                head = (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n" + fields if last
                        else b"HTTP/1.1 200 OK\r\n" + fields + b"Content-Length: 0\r\n") + b"\r\n"
                answer = agree(twin, "scan_response", head, 0, "GET", 65536, 100)
                simple = byte == 0x09 or 0x20 <= byte <= 0x7E
                assert (answer is not None) == simple, (at, byte)
