"""lbcore.l7.http1: readers, writers and their strictness.

Every reader test runs its bytes three ways (h11 tests/test_io.py): the whole
buffer at once, one byte at a time, and followed by trailing bytes of a next
message that must not disturb the events. And every test runs with the
readers' fast lane off, with its pure twin and with its compiled twin
(``fast_lane`` below): the fast lane must not change any outcome.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lbcore.l7.http1 import (
    HOP_BY_HOP,
    Data,
    EndOfMessage,
    InformationalResponse,
    ProtocolError,
    Request,
    RequestReader,
    Response,
    ResponseReader,
    connection_tokens,
    encode_chunk,
    encode_last_chunk,
    encode_request_head,
    encode_response_head,
    error_response,
)
from tests.unit.test_http1_fastlane import LANES, merge, use_default_lane

MODES = ["whole", "bytewise", "trailing"]
NEXT_REQUEST = b"GET /next HTTP/1.1\r\nHo"  # the start of a pipelined request
NEXT_RESPONSE = b"HTTP/1.1 200 OK\r\nCont"


@pytest.fixture(autouse=True, params=LANES)
def fast_lane(request, monkeypatch):
    """Every test runs with the readers' fast lane off (llhttp only), with the pure
    twin and with the compiled twin: the fast lane must not change any outcome."""
    use_default_lane(monkeypatch, request.param)


def feed(reader, data: bytes, mode: str = "whole", eof: bool = False):
    events = []
    if mode == "bytewise":
        for i in range(len(data)):
            events += reader.feed(data[i : i + 1])
    else:
        events += reader.feed(data)
    if eof:
        events += reader.feed_eof()
    return merge(events)


def read_requests(data: bytes, mode: str = "whole", eof: bool = False, **limits):
    reader = RequestReader(**limits)
    if mode == "trailing":
        return feed(reader, data + NEXT_REQUEST)
    return feed(reader, data, mode, eof)


def read_responses(data: bytes, methods, mode: str = "whole", eof: bool = False, **limits):
    reader = ResponseReader(**limits)
    for method in methods:
        reader.expect(method)
    if mode == "trailing":
        reader.expect("GET")
        return feed(reader, data + NEXT_RESPONSE)
    return feed(reader, data, mode, eof)


def reject(reader_fn, data: bytes, status: int, mode: str = "whole", **kw):
    with pytest.raises(ProtocolError) as info:
        reader_fn(data, mode=mode, eof=True, **kw)
    assert info.value.status_hint == status, info.value
    return info.value


def req(method="GET", target="/", headers=(("Host", "example.com"),), version="1.1", keep_alive=True,
        chunked=False, content_length=None, expect_continue=False, upgrade=None):
    return Request(method, target, tuple(headers), version, keep_alive, chunked, content_length,
                   expect_continue, upgrade)


# == RequestReader =================================================================


@pytest.mark.parametrize("mode", MODES)
def test_simple_get(mode):
    data = b"GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nX-Case:  kept \t \r\nx-case: two\r\nEmpty:\r\n\r\n"
    assert read_requests(data, mode) == [
        req(target="/a?b=c", headers=[("Host", "example.com"), ("X-Case", "kept"), ("x-case", "two"), ("Empty", "")]),
        EndOfMessage(),
    ]


@pytest.mark.parametrize("mode", MODES)
def test_obs_text_and_tab_in_values_are_latin1(mode):
    data = b"GET / HTTP/1.1\r\nHost: h\r\nX: caf\xe9\tb\xff\r\n\r\n"
    events = read_requests(data, mode)
    assert events[0].headers[1] == ("X", "caf\xe9\tb\xff")


@pytest.mark.parametrize("mode", MODES)
def test_pipelined_requests_in_order(mode):
    data = (
        b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"
        b"POST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
        b"\r\n"  # RFC 9112 2.2: an empty line before a request line is ignored
        b"PUT /3 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n"
    )
    events = read_requests(data, mode)
    assert [type(e).__name__ for e in events] == [
        "Request", "EndOfMessage", "Request", "Data", "EndOfMessage", "Request", "Data", "EndOfMessage",
    ]
    assert [e.target for e in events if isinstance(e, Request)] == ["/1", "/2", "/3"]
    assert events[2].content_length == 5 and not events[2].chunked
    assert events[3] == Data(b"hello")
    assert events[5].chunked and events[5].content_length is None
    assert events[6] == Data(b"ab")


@pytest.mark.parametrize("mode", MODES)
def test_chunked_with_extensions_and_trailers(mode):
    data = (
        b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\nTrailer: X-Sum\r\n\r\n"
        b"5;name=value\r\nhello\r\n"
        b"6\r\n world\r\n"
        b"A\r\n0123456789\r\n"
        b"0\r\nX-Sum: 42 \r\nx-more: a\r\n\r\n"
    )
    events = read_requests(data, mode)
    assert events[1] == Data(b"hello world0123456789")
    assert events[2] == EndOfMessage((("X-Sum", "42"), ("x-more", "a")))
    assert len(events) == 3


def test_data_events_are_never_empty_and_come_per_feed():
    reader = RequestReader()
    head = reader.feed(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\n\r\n")
    assert head == [req("POST", content_length=6, headers=[("Host", "h"), ("Content-Length", "6")])]
    assert reader.feed(b"ab") == [Data(b"ab")]
    assert reader.feed(b"cdef") == [Data(b"cdef"), EndOfMessage()]


@pytest.mark.parametrize(
    "version, connection, keep_alive",
    [
        ("1.1", None, True),
        ("1.1", "close", False),
        ("1.1", "Keep-Alive, CLOSE", False),
        ("1.1", "keep-alive", True),
        ("1.0", None, False),
        ("1.0", "keep-alive", True),
        ("1.0", "Keep-Alive", True),
        ("1.0", "keep-alive, close", False),
    ],
)
def test_keep_alive(version, connection, keep_alive):
    head = f"GET / HTTP/{version}\r\nHost: h\r\n"
    if connection:
        head += f"Connection: {connection}\r\n"
    events = read_requests(head.encode() + b"\r\n")
    assert events[0].keep_alive is keep_alive


@pytest.mark.parametrize("mode", MODES)
def test_bytes_after_a_closing_request_are_ignored(mode):
    # RFC 9112 9.6: no further request is processed; no error either, so the
    # engine can still answer the first one.
    data = b"GET /1 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n"
    events = read_requests(data, mode)
    assert [e.target for e in events if isinstance(e, Request)] == ["/1"]
    reader = RequestReader()
    reader.feed(b"GET / HTTP/1.0\r\n\r\n")
    assert reader.feed(b"garbage that would be an error \x00\r\n\r\n") == []
    assert reader.feed_eof() == []


@pytest.mark.parametrize(
    "head, expected",
    [
        (b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n", True),
        (b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n", True),
        (b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n", False),
        (b"POST / HTTP/1.1\r\nHost: h\r\nExpect: something-else\r\nContent-Length: 1\r\n\r\n", False),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\n", False),
    ],
)
def test_expect_continue(head, expected):
    reader = RequestReader()
    events = reader.feed(head)
    assert events[0].expect_continue is expected
    assert reader.feed(b"x") == [Data(b"x"), EndOfMessage()]


UPGRADE = (
    b"GET /chat HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\n"
    b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


@pytest.mark.parametrize("mode", ["whole", "bytewise"])
def test_upgrade_and_tail(mode):
    reader = RequestReader()
    events = feed(reader, b"GET /before HTTP/1.1\r\nHost: h\r\n\r\n" + UPGRADE + b"\x81\x05hello", mode)
    assert [type(e) for e in events] == [Request, EndOfMessage, Request, EndOfMessage]
    assert events[2].upgrade == "websocket" and events[0].upgrade is None
    assert reader.upgraded
    assert reader.feed(b" more") == []  # kept for the tunnel until taken
    assert reader.take_tail() == b"\x81\x05hello more"
    with pytest.raises(RuntimeError):
        reader.take_tail()
    with pytest.raises(RuntimeError):
        reader.feed(b"x")


def test_upgrade_needs_the_connection_option():
    events = read_requests(b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n")
    assert events[0].upgrade is None
    assert events[2].target == "/2"


def test_upgrade_in_http10_is_ignored_and_parsing_goes_on():
    # RFC 9110 7.8: a server ignores Upgrade in an HTTP/1.0 request.
    reader = RequestReader()
    data = b"GET / HTTP/1.0\r\nConnection: keep-alive, upgrade\r\nUpgrade: websocket\r\n\r\nGET /2 HTTP/1.0\r\n\r\n"
    events = reader.feed(data)
    assert events[0].upgrade is None and not reader.upgraded
    assert events[2].target == "/2"


def test_declined_upgrade_tail_goes_to_a_fresh_reader():
    reader = RequestReader()
    reader.feed(UPGRADE + b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n")
    assert reader.upgraded
    events = RequestReader().feed(reader.take_tail())
    assert events[0].target == "/next"


def test_connect_is_parsed_and_tunnels():
    reader = RequestReader()
    events = reader.feed(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01")
    assert events == [req("CONNECT", "example.com:443", [("Host", "example.com:443")]), EndOfMessage()]
    assert reader.upgraded and reader.take_tail() == b"\x16\x03\x01"


@pytest.mark.parametrize("framing", [b"Content-Length: 3\r\n", b"Transfer-Encoding: chunked\r\n"])
def test_upgrade_with_a_body_is_refused(framing):
    # llhttp hands the body of an upgrade request to the tunnel; lbcore refuses
    # such a request rather than forward a body as tunnel bytes.
    reject(read_requests, UPGRADE[:-2] + framing + b"\r\nabc", 400)


def test_feed_eof():
    reader = RequestReader()
    reader.feed(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert reader.feed_eof() == []
    with pytest.raises(RuntimeError):
        reader.feed(b"GET")
    for partial in [
        b"GE",
        b"GET / HTTP/1.1\r\nHost: h\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nab",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n",
    ]:
        reader = RequestReader()
        reader.feed(partial)
        with pytest.raises(ProtocolError) as info:
            reader.feed_eof()
        assert info.value.status_hint == 400


def test_errors_are_sticky_and_carry_earlier_events():
    reader = RequestReader()
    with pytest.raises(ProtocolError) as info:
        reader.feed(b"GET /ok HTTP/1.1\r\nHost: h\r\n\r\nGET /bad HTTP/1.1\r\nHost: h\r\nBad Name: x\r\n\r\n")
    assert [e.target for e in info.value.events if isinstance(e, Request)] == ["/ok"]
    with pytest.raises(ProtocolError) as again:
        reader.feed(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert again.value is info.value
    with pytest.raises(ProtocolError):
        reader.feed_eof()


# -- strictness ----------------------------------------------------------------------

H = b"POST / HTTP/1.1\r\nHost: h\r\n"


@pytest.mark.parametrize("mode", ["whole", "bytewise"])
@pytest.mark.parametrize(
    "data, status",
    [
        # framing (RFC 9112 6.1, 6.3)
        (H + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (H + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n", 400),
        (H + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400),
        (H + b"Content-Length: 3\r\ncontent-length: 4\r\n\r\nabcd", 400),
        (H + b"Content-Length: 3, 3\r\n\r\nabc", 400),
        (H + b"Content-Length: +3\r\n\r\nabc", 400),
        (H + b"Content-Length: 0x3\r\n\r\nabc", 400),
        (H + b"Content-Length: \r\n\r\n", 400),
        (H + b"Content-Length: 99999999999999999999999\r\n\r\n", 400),
        (H + b"Transfer-Encoding: gzip\r\n\r\n", 400),
        (H + b"Transfer-Encoding: chunked, gzip\r\n\r\n", 400),
        (H + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400),
        (H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (H + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
        (H + b"Transfer-Encoding: x-custom\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        # field syntax (RFC 9110 5, RFC 9112 5)
        (H + b"X: a\r\n folded\r\n\r\n", 400),
        (H + b"X: a\r\n\tfolded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400),
        (H + b"X : a\r\n\r\n", 400),
        (H + b"X\t: a\r\n\r\n", 400),
        (H + b"X@Y: a\r\n\r\n", 400),
        (H + b"X(Y): a\r\n\r\n", 400),
        (H + b"X\xe9: a\r\n\r\n", 400),
        (H + b": a\r\n\r\n", 400),
        (H + b"X: a\x00b\r\n\r\n", 400),
        (H + b"X: a\rb\r\n\r\n", 400),
        (H + b"X: a\nY: b\r\n\r\n", 400),
        (H + b"X: a\x01b\r\n\r\n", 400),
        (H + b"X: a\x7fb\r\n\r\n", 400),
        (b"GET / HTTP/1.1\nHost: h\n\n", 400),
        # chunks (RFC 9112 7.1)
        (H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (H + b"Transfer-Encoding: chunked\r\n\r\n-1\r\n", 400),
        (H + b"Transfer-Encoding: chunked\r\n\r\n3 \r\nabc\r\n0\r\n\r\n", 400),
        (H + b"Transfer-Encoding: chunked\r\n\r\n10000000000000000\r\n", 400),
        (H + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabcXX", 400),
        (H + b"Transfer-Encoding: chunked\r\n\r\n0\r\nT : v\r\n\r\n", 400),
        (H + b"Transfer-Encoding: chunked\r\n\r\n0\r\nT: v\r\n w\r\n\r\n", 400),
        # start line, version, Host (RFC 9112 2.3, 3, 3.2)
        (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505),
        (b"GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505),
        (b"GET / HTTP/0.9\r\nHost: h\r\n\r\n", 505),
        (b"GET /\r\n\r\n", 505),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
        (b"GET / http/1.1\r\nHost: h\r\n\r\n", 400),
        (b"GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400),
        (b"get / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"BREW / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"GET /\xff HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nhost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),  # a TLS ClientHello
    ],
)
def test_request_rejected(data, status, mode):
    reject(read_requests, data, status, mode)


@pytest.mark.parametrize("target", ["*", "http://example.com:8080/a?b#c", "/%7E/a;b"])
def test_request_target_forms(target):
    method = "OPTIONS" if target == "*" else "GET"
    data = f"{method} {target} HTTP/1.1\r\nHost: example.com\r\n\r\n".encode()
    assert read_requests(data)[0].target == target


def test_http10_upgrade_with_a_body_is_refused():
    data = b"POST / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: x\r\nContent-Length: 2\r\n\r\nab"
    reject(read_requests, data, 400)


def test_http10_request_needs_no_host():
    assert read_requests(b"GET / HTTP/1.0\r\n\r\n")[0] == req(headers=(), version="1.0", keep_alive=False)


@pytest.mark.parametrize("mode", ["whole", "bytewise"])
def test_request_line_limit(mode):
    line = b"GET /" + b"a" * 84 + b" HTTP/1.1\r\n"
    assert len(line) == 100
    assert read_requests(line + b"Host: h\r\n\r\n", mode, max_request_line=100)[0].target == "/" + "a" * 84
    reject(read_requests, b"GET /" + b"a" * 85 + b" HTTP/1.1\r\nHost: h\r\n\r\n", 414, mode, max_request_line=100)
    # refused before the line ends
    reject(read_requests, b"GET /" + b"a" * 500, 414, mode, max_request_line=100)


@pytest.mark.parametrize("mode", ["whole", "bytewise"])
def test_header_section_limits(mode):
    fields = b"".join(b"X-%02d: %s\r\n" % (i, b"v" * 10) for i in range(10))  # 10 fields of 4+10+4 bytes
    data = b"GET / HTTP/1.1\r\n" + fields + b"Host: h\r\n\r\n"  # and 4+1+4: 189 bytes
    assert len(read_requests(data, mode, max_header_bytes=189, max_headers=11)[0].headers) == 11
    reject(read_requests, data, 431, mode, max_header_bytes=188)
    reject(read_requests, data, 431, mode, max_headers=10)


def test_the_engines_constructor_makes_the_same_reader():
    """new_request_reader (the engine's, without the type call) takes the same limits,
    positionally, and the default fast lane."""
    from lbcore.l7._http1_requests import new_request_reader

    fields = b"".join(b"X-%02d: %s\r\n" % (i, b"v" * 10) for i in range(10))
    data = b"GET / HTTP/1.1\r\n" + fields + b"Host: h\r\n\r\n"
    for limits, status in [((100, 189, 11), None), ((100, 188, 11), 431), ((100, 189, 10), 431), ((20, 189, 11), None)]:
        made, reference = new_request_reader(*limits), RequestReader(*limits)
        assert made._fast_lane is reference._fast_lane
        outcomes = []
        for reader in (made, reference):
            try:
                outcomes.append(merge(reader.feed(data)))
            except ProtocolError as exc:
                outcomes.append(exc.status_hint)
        assert outcomes[0] == outcomes[1]
        if status is not None:
            assert outcomes[0] == status
    long_line = b"GET /" + b"a" * 85 + b" HTTP/1.1\r\nHost: h\r\n\r\n"
    with pytest.raises(ProtocolError) as info:
        new_request_reader(100, 1000, 10).feed(long_line)
    assert info.value.status_hint == 414


@pytest.mark.parametrize("split", [1, 100, 1000])
def test_an_endless_header_is_refused_while_it_streams(split):
    reader = RequestReader(max_request_line=100, max_header_bytes=1000)
    reader.feed(b"GET / HTTP/1.1\r\nHost: h\r\nX: ")
    with pytest.raises(ProtocolError) as info:
        for _ in range(5000 // split):
            reader.feed(b"v" * split)
    assert info.value.status_hint == 431


def test_many_small_headers_in_one_feed_are_refused_at_its_end():
    reader = RequestReader(max_headers=100)
    with pytest.raises(ProtocolError) as info:
        reader.feed(b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 200)  # head not finished
    assert info.value.status_hint == 431


@pytest.mark.parametrize("mode", ["whole", "bytewise"])
def test_trailer_limits(mode):
    body = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n"
    trailers = b"".join(b"T-%02d: vvvvvvvvvv\r\n" % i for i in range(10)) + b"\r\n"  # 180 bytes
    assert len(read_requests(body + trailers, mode, max_header_bytes=180)[2].trailers) == 10
    reject(read_requests, body + trailers, 431, mode, max_header_bytes=179)
    reject(read_requests, body + trailers, 431, mode, max_headers=9)


def test_an_endless_trailer_is_refused_while_it_streams():
    reader = RequestReader(max_request_line=100, max_header_bytes=1000)
    reader.feed(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nT: ")
    with pytest.raises(ProtocolError) as info:
        for _ in range(100):
            reader.feed(b"v" * 100)
    assert info.value.status_hint == 431


def test_a_long_chunked_body_is_not_mistaken_for_a_long_head():
    reader = RequestReader(max_request_line=100, max_header_bytes=100)
    reader.feed(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(100):
        assert reader.feed(b"10\r\n" + b"x" * 16 + b"\r\n") == [Data(b"x" * 16)]
    assert reader.feed(b"0\r\n\r\n") == [EndOfMessage()]


# == ResponseReader ================================================================


def resp(status=200, reason="OK", headers=(), version="1.1", keep_alive=True, chunked=False, content_length=None):
    return Response(status, reason, tuple(headers), version, keep_alive, chunked, content_length)


@pytest.mark.parametrize("mode", MODES)
def test_response_content_length(mode):
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nhello"
    assert read_responses(data, ["GET"], mode) == [
        resp(headers=[("Content-Length", "5"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")], content_length=5),
        Data(b"hello"),
        EndOfMessage(),
    ]


@pytest.mark.parametrize("mode", MODES)
def test_response_chunked_with_trailers(mode):
    data = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3;x=y\r\nabc\r\n1\r\nd\r\n0\r\nServer-Timing: db;dur=53\r\n\r\n")
    events = read_responses(data, ["GET"], mode)
    assert events == [
        resp(headers=[("Transfer-Encoding", "chunked")], chunked=True),
        Data(b"abcd"),
        EndOfMessage((("Server-Timing", "db;dur=53"),)),
    ]


@pytest.mark.parametrize("mode", ["whole", "bytewise"])
def test_response_close_delimited(mode):
    data = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nbody until EOF"
    events = read_responses(data, ["GET"], mode, eof=True)
    assert events == [
        resp(headers=[("Content-Type", "text/plain")], keep_alive=False),
        Data(b"body until EOF"),
        EndOfMessage(),
    ]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "method, status, framing",
    [
        ("HEAD", 200, b"Content-Length: 1234\r\n"),
        ("HEAD", 200, b"Transfer-Encoding: chunked\r\n"),
        ("HEAD", 200, b""),
        ("HEAD", 404, b"Content-Length: 10\r\n"),
        ("GET", 204, b""),
        ("GET", 204, b"Content-Length: 7\r\n"),
        ("GET", 304, b"Content-Length: 1234\r\n"),
        ("GET", 304, b"Transfer-Encoding: chunked\r\n"),
        ("POST", 304, b""),
    ],
)
def test_responses_without_body(method, status, framing, mode):
    # A pipelined response follows each: a body read by mistake would eat it.
    data = b"HTTP/1.1 %d Whatever\r\n%s\r\n" % (status, framing) + b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    events = read_responses(data, [method, "GET"], mode)
    assert [type(e) for e in events] == [Response, EndOfMessage, Response, Data, EndOfMessage]
    assert events[0].status == status and events[0].keep_alive
    assert events[0].chunked == (b"chunked" in framing)
    assert events[3] == Data(b"ok")


@pytest.mark.parametrize("mode", MODES)
def test_head_response_after_a_chunked_response_in_the_same_bytes(mode):
    data = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")
    events = read_responses(data, ["GET", "HEAD", "GET"], mode)
    assert [type(e) for e in events] == [
        Response, Data, EndOfMessage, Response, EndOfMessage, Response, Data, EndOfMessage,
    ]
    assert events[1] == Data(b"body") and events[6] == Data(b"abc")


@pytest.mark.parametrize("mode", MODES)
def test_chunk_data_that_looks_like_framing(mode):
    # The body's end is found by chunk sizes, not by searching for CRLF CRLF.
    tricky = b"\r\n\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"
    data = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%b\r\n0\r\n\r\n" % (len(tricky), tricky)
            + b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n")
    events = read_responses(data, ["GET", "HEAD"], mode)
    assert events[1] == Data(tricky)
    assert [type(e) for e in events[2:]] == [EndOfMessage, Response, EndOfMessage]


@pytest.mark.parametrize("mode", MODES)
def test_blank_lines_before_a_response(mode):
    data = b"\r\n\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    assert read_responses(data, ["HEAD"], mode) == [resp(headers=[("Content-Length", "0")], content_length=0), EndOfMessage()]


def test_readers_take_any_bytes_like_object():
    reader = ResponseReader()
    reader.expect("GET")
    events = reader.feed(bytearray(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"))
    events += reader.feed(memoryview(b"okHTTP")[:2])
    assert events[1:] == [Data(b"ok"), EndOfMessage()]
    reader = RequestReader()
    events = reader.feed(bytearray(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"))
    assert events[0].target == "/"
    assert reader.feed(memoryview(b"GET /2 HTTP/1.1\r\nHost: h\r\n\r\n"))[0].target == "/2"


@pytest.mark.parametrize("mode", MODES)
def test_informational_responses(mode):
    data = (b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
            b"HTTP/1.1 150 Odd\r\nContent-Length: 5\r\n\r\n"  # a 1xx never has a body
            b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
    events = read_responses(data, ["POST"], mode)
    assert events == [
        InformationalResponse(100, "Continue", ()),
        InformationalResponse(103, "Early Hints", (("Link", "</style.css>; rel=preload"),)),
        InformationalResponse(150, "Odd", (("Content-Length", "5"),)),
        resp(201, "Created", [("Content-Length", "0")], content_length=0),
        EndOfMessage(),
    ]


@pytest.mark.parametrize("mode", ["whole", "bytewise"])
def test_switching_protocols(mode):
    reader = ResponseReader()
    reader.expect("GET")
    data = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x02hi"
    events = feed(reader, data, mode)
    assert events == [
        resp(101, "Switching Protocols", [("Upgrade", "websocket"), ("Connection", "Upgrade")], keep_alive=False),
        EndOfMessage(),
    ]
    assert reader.upgraded
    assert reader.feed(b"!") == []
    assert reader.take_tail() == b"\x81\x02hi!"
    with pytest.raises(RuntimeError):
        reader.feed(b"x")


def test_connect_2xx_tunnels_and_other_answers_do_not():
    reader = ResponseReader()
    reader.expect("CONNECT")
    events = reader.feed(b"HTTP/1.1 200 Connection Established\r\n\r\n\x16\x03\x03")
    assert events == [resp(200, "Connection Established", keep_alive=False), EndOfMessage()]
    assert reader.upgraded and reader.take_tail() == b"\x16\x03\x03"
    events = read_responses(b"HTTP/1.1 407 Auth\r\nContent-Length: 2\r\n\r\nno", ["CONNECT"])
    assert events[1] == Data(b"no")


def test_response_keep_alive():
    cases = [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", True),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", True),
    ]
    for data, keep_alive in cases:
        assert read_responses(data, ["GET"])[0].keep_alive is keep_alive


def test_bytes_after_a_closing_response_are_ignored():
    reader = ResponseReader()
    reader.expect("GET")
    reader.expect("GET")
    events = reader.feed(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 200 OK\r\n\r\n")
    assert events[-1] == EndOfMessage() and len(events) == 3
    assert reader.feed(b"more") == []
    assert reader.feed_eof() == []


def test_unsolicited_response_bytes():
    reader = ResponseReader()
    assert reader.feed(b"\r\n") == []  # stray blank lines are tolerated
    with pytest.raises(ProtocolError):
        reader.feed(b"HTTP/1.1 200 OK\r\n")
    reader = ResponseReader()
    reader.expect("GET")
    with pytest.raises(ProtocolError) as info:
        reader.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n")
    assert [type(e) for e in info.value.events] == [Response, EndOfMessage]


def test_response_feed_eof():
    reader = ResponseReader()
    reader.expect("GET")
    assert reader.feed_eof() == []  # closed before answering: the engine sees no Response
    for partial in [b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nab",
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"]:
        reader = ResponseReader()
        reader.expect("GET")
        reader.feed(partial)
        with pytest.raises(ProtocolError):
            reader.feed_eof()


R = b"HTTP/1.1 200 OK\r\n"


@pytest.mark.parametrize("mode", ["whole", "bytewise"])
@pytest.mark.parametrize(
    "data, status",
    [
        (R + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (R + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
        (R + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400),
        (R + b"Transfer-Encoding: gzip\r\n\r\nabc", 400),
        (R + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
        (b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (R + b"X: a\r\n folded\r\n\r\n", 400),
        (R + b"X Y: a\r\n\r\n", 400),
        (R + b"X: a\x00\r\n\r\n", 400),
        (R + b"Transfer-Encoding: chunked\r\n\r\nxyz\r\n", 400),
        (R + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabcde\r\n0\r\n\r\n", 400),
        (b"HTTP/1.1 200 O\x01K\r\nContent-Length: 0\r\n\r\n", 400),
        (b"HTTP/1.1 020 OK\r\nContent-Length: 0\r\n\r\n", 400),
        (b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n", 400),
        (b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", 505),
        (b"HTTP/1.1 200 OK\nContent-Length: 0\n\n", 400),
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", 400),
    ],
)
def test_response_rejected(data, status, mode):
    reject(read_responses, data, status, mode, methods=["GET"])


@pytest.mark.parametrize("mode", ["whole", "bytewise"])
def test_response_head_limits(mode):
    data = R + b"".join(b"X-%02d: %s\r\n" % (i, b"v" * 10) for i in range(10)) + b"Content-Length: 0\r\n\r\n"
    assert len(read_responses(data, ["GET"], mode, max_header_bytes=len(data), max_headers=11)[0].headers) == 11
    reject(read_responses, data, 431, mode, methods=["GET"], max_header_bytes=len(data) - 1)
    reject(read_responses, data, 431, mode, methods=["GET"], max_headers=10)
    reject(read_responses, R + b"X: " + b"v" * 2000, 431, mode, methods=["GET"], max_header_bytes=1000)


def test_response_trailer_limits():
    head = R + b"Transfer-Encoding: chunked\r\n\r\n0\r\n"
    trailers = b"T: " + b"v" * 100 + b"\r\n\r\n"
    assert read_responses(head + trailers, ["GET"], max_header_bytes=200)[1].trailers == (("T", "v" * 100),)
    reject(read_responses, head + b"T: " + b"v" * 300 + b"\r\n\r\n", 431, methods=["GET"], max_header_bytes=200)
    reject(read_responses, head + b"T: v\r\n" * 5 + b"\r\n", 431, methods=["GET"], max_headers=4)
    reject(read_responses, R + b"Transfer-Encoding: chunked\r\n\r\n1" + b";e" * 5000, 400, methods=["GET"])


# == writers =======================================================================


def test_encode_request_head():
    assert encode_request_head("GET", "/a?b", [("Host", "h"), ("X", "caf\xe9")]) == (
        b"GET /a?b HTTP/1.1\r\nHost: h\r\nX: caf\xe9\r\n\r\n"
    )
    assert encode_request_head("OPTIONS", "*", [], "1.0") == b"OPTIONS * HTTP/1.0\r\n\r\n"


@pytest.mark.parametrize(
    "args",
    [
        ("GET", "/", [("Bad Name", "v")]),
        ("GET", "/", [("", "v")]),
        ("GET", "/", [("A\nB", "v")]),  # a bare LF in a name
        ("GET", "/", [("A", "v"), ("B\nC", "v")]),
        ("GET", "/", [("X", "a\r\nInjected: yes")]),
        ("GET", "/", [("X", "a\nb")]),
        ("GET", "/", [("X", "a\x00")]),
        ("GET", "/", [("X", "\u20ac")]),
        ("G ET", "/", []),
        ("GET", "/a b", []),
        ("GET", "", []),
        ("GET", "/\r\n", []),
        ("GET", "/", [], "2.0"),
    ],
)
def test_encode_request_head_refuses_bad_input(args):
    with pytest.raises(ValueError):
        encode_request_head(*args)


def test_encode_response_head():
    assert encode_response_head(200, "OK", [("Content-Length", "0")]) == b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    assert encode_response_head(204, "", [], "1.0") == b"HTTP/1.0 204 \r\n\r\n"
    for bad in [(99, "x", []), (200, "a\r\nb", []), (200, "OK", [("X:", "v")]), (200, "OK", [], "1.2")]:
        with pytest.raises(ValueError):
            encode_response_head(*bad)


def test_chunks():
    assert encode_chunk(b"") == b""
    assert encode_chunk(b"hello world, 17 b") == b"11\r\nhello world, 17 b\r\n"
    assert encode_chunk(memoryview(b"ab")) == b"2\r\nab\r\n"
    assert encode_last_chunk() == b"0\r\n\r\n"
    assert encode_last_chunk([("X-Sum", "1")]) == b"0\r\nX-Sum: 1\r\n\r\n"
    with pytest.raises(ValueError):
        encode_last_chunk([("X", "a\r\n")])


def test_error_response():
    data = error_response(502)
    assert data == (
        b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 16\r\n"
        b"Cache-Control: no-cache\r\nConnection: close\r\n\r\n502 Bad Gateway\n"
    )
    events = read_responses(data, ["GET"])
    assert events[0].status == 502 and not events[0].keep_alive
    assert events[1] == Data(b"502 Bad Gateway\n")
    kept = read_responses(error_response(431, keep_alive=True), ["GET"])
    assert kept[0].keep_alive and kept[0].reason == "Request Header Fields Too Large"
    assert ("Connection", "close") not in kept[0].headers
    moved = read_responses(error_response(301, extra_headers=[("Location", "https://h/")]), ["GET"])
    assert moved[0].headers[-1] == ("Location", "https://h/")
    assert error_response(599).startswith(b"HTTP/1.1 599 Unknown Status\r\n")
    for bad in (100, 204, 304):
        with pytest.raises(ValueError):
            error_response(bad)


def test_hop_by_hop_and_connection_tokens():
    assert HOP_BY_HOP == {"connection", "keep-alive", "proxy-connection", "te", "transfer-encoding", "upgrade"}
    headers = [("Connection", "Keep-Alive, X-Private"), ("connection", " upgrade ,, "), ("X-Private", "1")]
    assert connection_tokens(headers) == {"keep-alive", "x-private", "upgrade"}
    assert connection_tokens([("Host", "h")]) == frozenset()


def test_events_validate():
    with pytest.raises(ValueError):
        req(version="2.0")
    with pytest.raises(ValueError):
        resp(status=100)
    with pytest.raises(ValueError):
        InformationalResponse(200, "OK", ())
    with pytest.raises(ValueError):
        InformationalResponse(101, "Switching", ())
    with pytest.raises(AttributeError):
        req().method = "POST"  # frozen


# == round trips: writers -> readers ===============================================

TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
FRAMING = {"host", "content-length", "transfer-encoding", "connection", "upgrade", "expect", "te", "trailer"}
names = st.text(TCHAR, min_size=1, max_size=10).filter(lambda n: n.lower() not in FRAMING)
values = st.text(st.characters(min_codepoint=0x21, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=12)
fields = st.lists(st.tuples(names, values), max_size=6)
bodies = st.lists(st.binary(min_size=1, max_size=20), max_size=4)


@settings(max_examples=100, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
    path=st.text("abc/%?=&-._~", max_size=15),
    headers=fields,
    chunks=bodies,
    chunked=st.booleans(),
    trailers=fields,
    cut=st.integers(min_value=0, max_value=400),
)
def test_request_round_trip(method, path, headers, chunks, chunked, trailers, cut):
    body = b"".join(chunks)
    head = [("Host", "h"), *headers]
    if chunked:
        wire = encode_request_head(method, "/" + path, head + [("Transfer-Encoding", "chunked")])
        wire += b"".join(encode_chunk(c) for c in chunks) + encode_last_chunk(trailers)
    else:
        trailers = []
        wire = encode_request_head(method, "/" + path, head + [("Content-Length", str(len(body)))]) + body
    reader = RequestReader()
    events = merge(reader.feed(wire[:cut]) + reader.feed(wire[cut:]) + reader.feed_eof())
    assert events[0].method == method and events[0].target == "/" + path
    assert events[0].headers[: len(head)] == tuple(head)
    assert b"".join(e.data for e in events if isinstance(e, Data)) == body
    assert events[-1] == EndOfMessage(tuple(trailers))


@settings(max_examples=100, deadline=None)
@given(
    status=st.integers(min_value=200, max_value=599),
    reason=st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=12),
    headers=fields,
    chunks=bodies,
    chunked=st.booleans(),
    method=st.sampled_from(["GET", "HEAD", "POST"]),
    cut=st.integers(min_value=0, max_value=400),
)
def test_response_round_trip(status, reason, headers, chunks, chunked, method, cut):
    body = b"".join(chunks)
    framing = [("Transfer-Encoding", "chunked")] if chunked else [("Content-Length", str(len(body)))]
    wire = encode_response_head(status, reason, headers + framing)
    no_body = method == "HEAD" or status in (204, 304)
    if not no_body:
        wire += b"".join(encode_chunk(c) for c in chunks) + encode_last_chunk() if chunked else body
    reader = ResponseReader()
    reader.expect(method)
    events = merge(reader.feed(wire[:cut]) + reader.feed(wire[cut:]) + reader.feed_eof())
    assert events[0] == resp(status, reason, headers + framing, chunked=chunked,
                             content_length=None if chunked else len(body))
    assert b"".join(e.data for e in events if isinstance(e, Data)) == (b"" if no_body else body)
    assert events[-1] == EndOfMessage()
