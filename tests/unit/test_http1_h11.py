r"""Differential tests: lbcore's HTTP/1.1 readers against h11, the reference twin.

Hypothesis writes valid requests and responses from the RFC 9110/9112 grammar
(methods, targets, field names and values with optional whitespace, bodies by
Content-Length or by chunks with extensions and trailers, informational
responses, several messages back to back), cuts the bytes at random points and
feeds them to both parsers. The event sequences must agree.

Then it breaks one message of a valid stream in a known way and checks that
both refuse it, except where lbcore is deliberately stricter than h11:

* Content-Length together with Transfer-Encoding: h11 lets chunked win; lbcore
  refuses (RFC 9112 6.3 rule 3: "ought to be handled as an error", the
  request-smuggling vector).
* Repeated identical Content-Length (as two fields, or "5, 5"): h11 merges;
  lbcore refuses, as llhttp does (RFC 9112 6.3 rule 5 allows either).
* obs-fold: h11 unfolds; lbcore refuses (RFC 9112 5.2 allows either).
* Bare LF line ends: h11 accepts; lbcore refuses (RFC 9112 2.2 allows either).
* HTTP/2.0 in a request line: h11 parses it as HTTP/1.x; lbcore answers 505.
* CTLs other than NUL, CR, LF, VT, FF in a field value or reason phrase: h11
  accepts them ([^\x00\s]); lbcore refuses (RFC 9110 5.5 allows only HTAB).
* Transfer-Encoding in an HTTP/1.0 message: h11 accepts; lbcore refuses
  (RFC 9112 6.1: "MUST treat the message as if the framing is faulty").

Where lbcore is more lenient (llhttp accepts several spaces between the parts
of a request line, h11 does not) nothing is generated; h11 accepts arbitrary
token methods, llhttp only the ones it knows, so methods come from that list.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lbcore.l7.http1 import (
    Data,
    EndOfMessage,
    InformationalResponse,
    ProtocolError,
    Request,
    RequestReader,
    Response,
    ResponseReader,
)
from tests.unit.test_http1_fastlane import LANES, use_default_lane

SETTINGS = settings(max_examples=200, deadline=None)


@pytest.fixture(autouse=True, params=LANES)
def fast_lane(request, monkeypatch):
    """Every test runs with the readers' fast lane off (llhttp only), with the pure
    twin and with the compiled twin: the fast lane must not change any outcome."""
    use_default_lane(monkeypatch, request.param)


# -- grammar -----------------------------------------------------------------------

TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
VCHAR = "".join(chr(c) for c in range(0x21, 0x7F))
OBS_TEXT = "".join(chr(c) for c in range(0x80, 0x100))
# Fields whose meaning the generator controls itself.
FRAMING = {"host", "content-length", "transfer-encoding", "connection", "upgrade", "expect", "te", "trailer"}
# Methods llhttp knows (h11 takes any token).
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND", "MKCOL", "PURGE", "QUERY", "HEAD"]

names = st.text(TCHAR, min_size=1, max_size=12).filter(lambda n: n.lower() not in FRAMING)
# field-value = *field-content, field-content = field-vchar [ 1*( SP / HTAB / field-vchar ) field-vchar ]
values = st.text(VCHAR + OBS_TEXT + " \t", max_size=16).map(lambda v: v.strip(" \t"))
ows = st.sampled_from(["", " ", "\t", "  ", " \t "])


@st.composite
def field_lines(draw, max_size=6):
    """(name, value, the line as sent): OWS around the value is not part of it."""
    out = []
    for name, value in draw(st.lists(st.tuples(names, values), max_size=max_size)):
        line = f"{name}:{draw(ows)}{value}{draw(ows) if value else ''}\r\n".encode("latin-1")
        out.append((name, value, line))
    return out


@st.composite
def chunked_body(draw):
    """(raw chunked bytes, decoded body, trailers)."""
    raw, body = [], b""
    for chunk in draw(st.lists(st.binary(min_size=1, max_size=40), max_size=5)):
        size = "%x" % len(chunk)
        size = size.upper() if draw(st.booleans()) else size
        ext = draw(st.sampled_from(["", ";ext", ";a=b", ';n="q s"']))
        raw.append(f"{size}{ext}\r\n".encode() + chunk + b"\r\n")
        body += chunk
    trailers = draw(field_lines(max_size=3))
    raw.append(b"0\r\n" + b"".join(t[2] for t in trailers) + b"\r\n")
    return b"".join(raw), body, tuple((n, v) for n, v, _ in trailers)


@dataclass(frozen=True)
class Message:
    start: bytes
    lines: tuple[bytes, ...]
    body_raw: bytes

    def wire(self) -> bytes:
        return self.start + b"".join(self.lines) + b"\r\n" + self.body_raw


@dataclass(frozen=True)
class Expected:
    message: Message
    events: tuple


@st.composite
def request(draw, last: bool):
    method = draw(st.sampled_from(METHODS))
    target = "/" + draw(st.text(VCHAR, max_size=20))
    version = draw(st.sampled_from(["1.1", "1.0"])) if last else "1.1"
    fields = draw(field_lines())
    headers = [(n, v) for n, v, _ in fields]
    lines = [line for _, _, line in fields]
    if version == "1.1" or draw(st.booleans()):
        at = draw(st.integers(0, len(lines)))
        host = draw(st.sampled_from(["example.com", "h:8080", "[::1]:80", ""]))
        lines.insert(at, f"Host: {host}\r\n".encode())
        headers.insert(at, ("Host", host))
    kind = draw(st.sampled_from(["none", "length", "chunked"] if version == "1.1" else ["none", "length"]))
    body, trailers, raw = b"", (), b""
    if kind == "length":
        body = raw = draw(st.binary(max_size=60))
        cl = draw(st.sampled_from(["", "0", "00"])) + str(len(body))
        extra = [(("Content-Length", cl), f"Content-Length: {cl}\r\n".encode())]
    elif kind == "chunked":
        raw, body, trailers = draw(chunked_body())
        te = draw(st.sampled_from(["chunked", "Chunked", "CHUNKED"]))
        extra = [(("Transfer-Encoding", te), f"Transfer-Encoding: {te}\r\n".encode())]
    else:
        extra = []
    if last and version == "1.1" and draw(st.booleans()):
        extra.append((("Connection", "close"), b"Connection: close\r\n"))
    for header, line in extra:
        at = draw(st.integers(0, len(lines)))
        lines.insert(at, line)
        headers.insert(at, header)
    message = Message(f"{method} {target} HTTP/{version}\r\n".encode(), tuple(lines), raw)
    events = [("request", method, target, tuple(headers), version)]
    if body:
        events.append(("data", body))
    events.append(("end", trailers))
    return Expected(message, tuple(events))


@st.composite
def pipelines(draw, build):
    count = draw(st.integers(1, 4))
    return [draw(build(last=i == count - 1)) for i in range(count)]


@st.composite
def cuts(draw, data: bytes):
    points = draw(st.lists(st.integers(0, len(data)), max_size=6))
    points = sorted(set(points) | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])]


# -- normalised event streams ----------------------------------------------------------


def fields_of(h11_headers) -> tuple:
    return tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in h11_headers.raw_items())


def normalise(events) -> list:
    out: list = []
    for event in events:
        if isinstance(event, Request):
            out.append(("request", event.method, event.target, event.headers, event.http_version))
        elif isinstance(event, InformationalResponse):
            out.append(("info", event.status, event.reason, event.headers))
        elif isinstance(event, Response):
            out.append(("response", event.status, event.reason, event.headers, event.http_version))
        elif isinstance(event, Data):
            if out and out[-1][0] == "data":
                out[-1] = ("data", out[-1][1] + event.data)
            else:
                out.append(("data", event.data))
        elif isinstance(event, EndOfMessage):
            out.append(("end", event.trailers))
    return out


def h11_event(event):
    if isinstance(event, h11.Request):
        return [("request", event.method.decode(), event.target.decode("latin-1"),
                 fields_of(event.headers), event.http_version.decode())]
    if isinstance(event, h11.InformationalResponse):
        return [("info", event.status_code, event.reason.decode("latin-1"), fields_of(event.headers))]
    if isinstance(event, h11.Response):
        return [("response", event.status_code, event.reason.decode("latin-1"),
                 fields_of(event.headers), event.http_version.decode())]
    if isinstance(event, h11.Data):
        return [Data(bytes(event.data))] if event.data else []
    if isinstance(event, h11.EndOfMessage):
        return [("end", fields_of(event.headers))]
    return []


def as_h11_sees_it(expected) -> list:
    """h11 lower-cases Transfer-Encoding values (h11 _headers.normalize_and_validate)."""
    out = []
    for item in expected:
        if item[0] in ("request", "response"):
            headers = tuple((n, v.lower() if n.lower() == "transfer-encoding" else v) for n, v in item[3])
            item = (*item[:3], headers, *item[4:])
        out.append(item)
    return out


def merge_h11(items) -> list:
    out: list = []
    for item in items:
        if isinstance(item, Data):
            if out and out[-1][0] == "data":
                out[-1] = ("data", out[-1][1] + item.data)
            else:
                out.append(("data", item.data))
        else:
            out.append(item)
    return out


# -- the two parsers ------------------------------------------------------------------


def lbcore_requests(chunks):
    reader = RequestReader()
    events = []
    for chunk in chunks:
        events += reader.feed(chunk)
    events += reader.feed_eof()
    return normalise(events)


def h11_requests(chunks):
    conn = h11.Connection(h11.SERVER)
    items: list = []

    def pump():
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
                return
            items.extend(h11_event(event))
            if isinstance(event, h11.EndOfMessage):
                conn.send(h11.Response(status_code=200, headers=[("Content-Length", "0")]))
                conn.send(h11.EndOfMessage())
                if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                    conn.start_next_cycle()

    for chunk in chunks:
        conn.receive_data(chunk)
        pump()
    conn.receive_data(b"")
    pump()
    return merge_h11(items)


def lbcore_responses(methods, chunks):
    reader = ResponseReader()
    for method in methods:
        reader.expect(method)
    events = []
    for chunk in chunks:
        events += reader.feed(chunk)
    events += reader.feed_eof()
    return normalise(events)


def h11_responses(methods, chunks):
    conn = h11.Connection(h11.CLIENT)
    items: list = []
    pending = list(methods)

    def send_next():
        conn.send(h11.Request(method=pending.pop(0), target="/", headers=[("Host", "example.com")]))
        conn.send(h11.EndOfMessage())

    def pump():
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
                return
            if event is h11.PAUSED:
                if not pending or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
                send_next()
                continue
            items.extend(h11_event(event))

    send_next()
    for chunk in chunks:
        conn.receive_data(chunk)
        pump()
    conn.receive_data(b"")
    pump()
    return merge_h11(items)


# == valid streams agree ============================================================


@SETTINGS
@given(data=st.data())
def test_requests_agree_with_h11(data):
    pipeline = data.draw(pipelines(request))
    wire = b"".join(p.message.wire() for p in pipeline)
    chunks = data.draw(cuts(wire))
    expected = [e for p in pipeline for e in p.events]
    assert lbcore_requests(chunks) == expected
    assert h11_requests(chunks) == as_h11_sees_it(expected)


@st.composite
def response(draw, last: bool):
    out_msgs, events = [], []
    for status in draw(st.lists(st.sampled_from([100, 102, 103]), max_size=2)):
        reason = draw(st.sampled_from(["Continue", "Processing", "Early Hints", ""]))
        fields = draw(field_lines(max_size=2))
        out_msgs.append(Message(f"HTTP/1.1 {status} {reason}\r\n".encode(), tuple(f[2] for f in fields), b""))
        events.append(("info", status, reason, tuple((n, v) for n, v, _ in fields)))
    method = draw(st.sampled_from(["GET", "POST", "HEAD"]))
    status = draw(st.one_of(st.sampled_from([200, 201, 204, 206, 301, 304, 404, 500, 503]), st.integers(200, 599)))
    reason = draw(st.text(VCHAR + OBS_TEXT + " \t", max_size=20))
    version = draw(st.sampled_from(["1.1", "1.0"])) if last else "1.1"
    fields = draw(field_lines())
    headers = [(n, v) for n, v, _ in fields]
    lines = [line for _, _, line in fields]
    no_body = method == "HEAD" or status in (204, 304)
    kinds = ["length", "chunked"] if version == "1.1" else ["length"]
    if last and not no_body:
        kinds.append("until-eof")
    kind = draw(st.sampled_from(kinds))
    body, trailers, raw = b"", (), b""
    if kind == "length":
        body = draw(st.binary(max_size=60))
        extra = [("Content-Length", str(len(body) if not no_body else draw(st.integers(0, 10**6))))]
        raw = b"" if no_body else body
    elif kind == "chunked":
        raw, body, trailers = draw(chunked_body())
        extra = [("Transfer-Encoding", "chunked")]
        if no_body:
            raw, body, trailers = b"", b"", ()
    else:
        body = raw = draw(st.binary(min_size=1, max_size=60))
        extra = []
    if no_body and status == 204 and kind == "length":
        extra = []  # RFC 9110 15.3.5: a 204 carries no Content-Length
    for name, value in extra:
        at = draw(st.integers(0, len(lines)))
        lines.insert(at, f"{name}: {value}\r\n".encode())
        headers.insert(at, (name, value))
    out_msgs.append(Message(f"HTTP/{version} {status} {reason}\r\n".encode("latin-1"), tuple(lines), raw))
    events.append(("response", status, reason, tuple(headers), version))
    if body and not no_body:
        events.append(("data", body))
    events.append(("end", trailers))
    return method, b"".join(m.wire() for m in out_msgs), tuple(events)


@SETTINGS
@given(data=st.data())
def test_responses_agree_with_h11(data):
    pipeline = data.draw(pipelines(response))
    methods = [p[0] for p in pipeline]
    wire = b"".join(p[1] for p in pipeline)
    chunks = data.draw(cuts(wire))
    expected = [e for p in pipeline for e in p[2]]
    assert lbcore_responses(methods, chunks) == expected
    assert h11_responses(methods, chunks) == as_h11_sees_it(expected)


# == broken streams: both refuse, or lbcore is deliberately stricter =====================


def add_line(message: Message, line: bytes, at: int) -> Message:
    lines = list(message.lines)
    lines.insert(min(at, len(lines)), line)
    return replace(message, lines=tuple(lines))


def without_framing(message: Message) -> Message:
    keep = tuple(l for l in message.lines if not l.lower().startswith((b"content-length", b"transfer-encoding")))
    return replace(message, lines=keep, body_raw=b"")


NOT_TOKEN = st.sampled_from(list("()<>@,;\\\"/[]?={} \x01\x7f\xe9"))

# defect name -> (how to break a message, does h11 refuse it too, lbcore's status_hint)
DEFECTS = {
    "conflicting Content-Length": (
        lambda m, d: replace(add_line(add_line(without_framing(m), b"Content-Length: 1\r\n", 0),
                                      b"Content-Length: 2\r\n", d.draw(st.integers(0, 9))), body_raw=b"xy"),
        True, 400),
    "invalid character in a field name": (
        lambda m, d: add_line(m, b"X" + d.draw(NOT_TOKEN).encode("latin-1") + b"Y: v\r\n", d.draw(st.integers(0, 9))),
        True, 400),
    "whitespace before the colon": (
        lambda m, d: add_line(m, b"X-Name" + d.draw(st.sampled_from([b" ", b"\t"])) + b": v\r\n",
                              d.draw(st.integers(0, 9))),
        True, 400),
    "NUL, VT or FF in a field value": (
        lambda m, d: add_line(m, b"X: a" + bytes([d.draw(st.sampled_from([0, 11, 12]))]) + b"b\r\n",
                              d.draw(st.integers(0, 9))),
        True, 400),
    "bare CR in a field value": (lambda m, d: add_line(m, b"X: a\rb\r\n", d.draw(st.integers(0, 9))), True, 400),
    "invalid chunk size": (
        lambda m, d: replace(add_line(without_framing(m), b"Transfer-Encoding: chunked\r\n", 0),
                             body_raw=d.draw(st.sampled_from([b"zz\r\n", b"-1\r\n", b"0x5\r\nhello\r\n0\r\n\r\n"]))),
        True, 400),
    "missing Host": (
        lambda m, d: replace(m, lines=tuple(l for l in m.lines if not l.lower().startswith(b"host:"))), True, 400),
    "two Host fields": (lambda m, d: add_line(m, b"Host: other.example\r\n", d.draw(st.integers(0, 9))), True, 400),
    "a coding before chunked": (
        lambda m, d: replace(add_line(without_framing(m), b"Transfer-Encoding: gzip, chunked\r\n", 0),
                             body_raw=b"0\r\n\r\n"),
        True, 501),
    # lbcore stricter (see the module docstring)
    "Content-Length with Transfer-Encoding": (
        lambda m, d: replace(add_line(add_line(without_framing(m), b"Transfer-Encoding: chunked\r\n", 0),
                                      b"Content-Length: 5\r\n", d.draw(st.integers(0, 9))), body_raw=b"0\r\n\r\n"),
        False, 400),
    "repeated identical Content-Length": (
        lambda m, d: replace(add_line(add_line(without_framing(m), b"Content-Length: 2\r\n", 0),
                                      d.draw(st.sampled_from([b"Content-Length: 2\r\n", b"content-length: 2\r\n"])),
                                      d.draw(st.integers(0, 9))), body_raw=b"xy"),
        False, 400),
    "Content-Length list": (
        lambda m, d: replace(add_line(without_framing(m), b"Content-Length: 2, 2\r\n", 0), body_raw=b"xy"),
        False, 400),
    "obs-fold": (
        lambda m, d: add_line(m, b"X-Folded: a\r\n" + d.draw(st.sampled_from([b" ", b"\t", b"   "])) + b"b\r\n",
                              d.draw(st.integers(0, 9))),
        False, 400),
    "bare LF line ends": (
        lambda m, d: Message(m.start.replace(b"\r\n", b"\n"), tuple(l.replace(b"\r\n", b"\n") for l in m.lines),
                             m.body_raw),
        False, 400),
    "HTTP/2.0 request line": (lambda m, d: replace(m, start=m.start.replace(b"HTTP/1.1", b"HTTP/2.0")), False, 505),
    "Transfer-Encoding in HTTP/1.0": (
        lambda m, d: replace(add_line(without_framing(m), b"Transfer-Encoding: chunked\r\n", d.draw(st.integers(0, 9))),
                             start=m.start.replace(b"HTTP/1.1", b"HTTP/1.0"), body_raw=b"2\r\nxy\r\n0\r\n\r\n"),
        False, 400),
    "another CTL in a field value": (
        lambda m, d: add_line(m, b"X: a" + bytes([d.draw(st.sampled_from([1, 8, 14, 27, 31, 127]))]) + b"b\r\n",
                              d.draw(st.integers(0, 9))),
        False, 400),
}


def h11_refuses(chunks) -> bool:
    try:
        h11_requests(chunks)
    except h11.RemoteProtocolError:
        return True
    return False


@SETTINGS
@given(data=st.data(), defect=st.sampled_from(sorted(DEFECTS)))
def test_broken_requests(data, defect):
    # HTTP/1.1 keep-alive requests, the last one broken
    pipeline = data.draw(st.lists(request(last=False), min_size=1, max_size=4))
    index = len(pipeline) - 1
    victim = pipeline[index].message
    if defect == "bare LF line ends":
        victim = without_framing(victim)  # keep the body out of it
    break_it, h11_too, status = DEFECTS[defect]
    broken = break_it(victim, data)
    wire = b"".join(p.message.wire() for p in pipeline[:index]) + broken.wire()
    chunks = data.draw(cuts(wire))
    with pytest.raises(ProtocolError) as info:
        lbcore_requests(chunks)
    assert info.value.status_hint == status
    assert h11_refuses(chunks) is h11_too


@pytest.mark.parametrize(
    "wire, h11_too",
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy", True),
        (b"HTTP/1.1 200 OK\r\nX Y: v\r\nContent-Length: 0\r\n\r\n", True),
        (b"HTTP/1.1 200 OK\r\nX: a\x00\r\nContent-Length: 0\r\n\r\n", True),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", True),
        (b"HTTP/1.1 200 O\x00K\r\nContent-Length: 0\r\n\r\n", True),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", True),
        # lbcore stricter, as for requests
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", False),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nxy", False),
        (b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.1 200 OK\nContent-Length: 0\n\n", False),
        (b"HTTP/1.1 200 O\x01K\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.1 200 OK\r\nX: \x7f\r\nContent-Length: 0\r\n\r\n", False),
    ],
)
def test_broken_responses(wire, h11_too):
    with pytest.raises(ProtocolError):
        lbcore_responses(["GET"], [wire])
    try:
        h11_responses(["GET"], [wire])
        h11_refused = False
    except h11.RemoteProtocolError:
        h11_refused = True
    assert h11_refused is h11_too
