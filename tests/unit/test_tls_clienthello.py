"""lbcore.tls.clienthello: real ClientHellos (Python's ssl, openssl s_client), split at
every byte and across records, garbage and mutations, limits."""

from __future__ import annotations

import re
import shutil
import socket
import ssl
import struct
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lbcore.l7.acl import compile_condition, parse_condition
from lbcore.l7.facts import RequestFacts
from lbcore.tls import ClientHello, ClientHelloError, ClientHelloReader, parse_client_hello
from lbcore.tls.clienthello import ALERT_RECORD_OVERFLOW, ECDSA_SUITES


def python_hello(server_hostname: str | None = "www.example.com", *, alpn=("h2", "http/1.1"),
                 maximum: ssl.TLSVersion | None = None, ciphers: str | None = None) -> bytes:
    """The first flight of Python's ssl client (OpenSSL): the ClientHello record(s)."""
    context = ssl.create_default_context()
    if server_hostname is None:
        context.check_hostname = False
    if alpn:
        context.set_alpn_protocols(list(alpn))
    if maximum is not None:
        context.maximum_version = maximum
    if ciphers is not None:
        context.set_ciphers(ciphers)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read()


HELLO = python_hello()
HELLO_12 = python_hello(maximum=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-RSA-AES128-GCM-SHA256")
HELLO_NO_SNI = python_hello(None, alpn=())


def handshake_payload(stream: bytes) -> bytes:
    """The handshake bytes carried by a stream of records."""
    out, pos = b"", 0
    while pos < len(stream):
        length = struct.unpack(">H", stream[pos + 3:pos + 5])[0]
        out += stream[pos + 5:pos + 5 + length]
        pos += 5 + length
    return out


def records(payload: bytes, cuts: list[int]) -> bytes:
    """``payload`` as handshake records split at ``cuts``."""
    edges = [0, *sorted(set(c for c in cuts if 0 < c < len(payload))), len(payload)]
    return b"".join(b"\x16\x03\x01" + struct.pack(">H", b - a) + payload[a:b] for a, b in zip(edges, edges[1:]))


def feed_all(data: bytes, chunks: list[int] | None = None, **limits) -> ClientHello | None:
    reader = ClientHelloReader(**limits)
    result = None
    edges = [0, *sorted(set(c for c in (chunks or []) if 0 < c < len(data))), len(data)]
    for a, b in zip(edges, edges[1:]):
        result = reader.feed(data[a:b])
    return result


# -- real ClientHellos ---------------------------------------------------------------------------------


def test_python_client_hello() -> None:
    hello = feed_all(HELLO)
    assert hello is not None
    assert hello.server_name == "www.example.com"
    assert hello.alpn == ("h2", "http/1.1")
    assert hello.versions[:2] == (0x0304, 0x0303) and hello.highest_version == "TLSv1.3"
    assert hello.legacy_version == 0x0303 and hello.size == len(HELLO)
    assert 0x0403 in hello.signature_algorithms and hello.offers_ecdsa
    assert 0x1301 in hello.cipher_suites and 29 in hello.groups  # TLS_AES_128_GCM_SHA256, x25519
    assert hello.extensions[0] == 0


def test_tls12_client_and_no_sni() -> None:
    hello = feed_all(HELLO_12)
    assert hello is not None and hello.cipher_suites[0] == 0xC02F  # ECDHE-RSA-AES128-GCM-SHA256
    assert hello.highest_version == "TLSv1.2"
    bare = feed_all(HELLO_NO_SNI)
    assert bare is not None and bare.server_name is None and bare.alpn == ()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_openssl_s_client_hello() -> None:
    """A ClientHello captured off a socket from ``openssl s_client``."""
    listening = socket.create_server(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    client = subprocess.Popen(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "Passthrough.Example.NET.",
         "-alpn", "http/1.1", "-tls1_2"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        listening.settimeout(10)
        conn, _ = listening.accept()
        conn.settimeout(10)
        reader = ClientHelloReader()
        hello = None
        while hello is None:
            data = conn.recv(7)  # small reads: records arrive split
            assert data, "s_client closed early"
            hello = reader.feed(data)
        conn.close()
    finally:
        client.kill()
        client.wait()
        listening.close()
    assert hello.server_name == "passthrough.example.net"
    assert hello.alpn == ("http/1.1",) and hello.highest_version == "TLSv1.2"
    routes = compile_condition(parse_condition("req.ssl_sni -i passthrough.example.net"))
    assert routes(RequestFacts(sni=hello.server_name))


def test_routing_by_sni_acl() -> None:
    hello = feed_all(python_hello("api.example.com"))
    assert hello is not None
    facts = RequestFacts(client_ip="10.0.0.1", sni=hello.server_name)
    assert compile_condition(parse_condition("ssl_sni -i api.example.com www.example.com"))(facts)
    assert not compile_condition(parse_condition("req.ssl_sni -i www.example.com"))(facts)


# -- splitting ----------------------------------------------------------------------------------------


def test_one_byte_at_a_time_and_trailing_bytes() -> None:
    reader = ClientHelloReader()
    for index in range(len(HELLO) - 1):
        assert reader.feed(HELLO[index:index + 1]) is None
    hello = reader.feed(HELLO[-1:] + b"\x17\x03\x03\x00\x05early")
    assert hello == feed_all(HELLO) and reader.done
    assert reader.feed(b"more") is hello  # done: the same event, bytes still kept
    assert reader.raw == HELLO + b"\x17\x03\x03\x00\x05early" + b"more"
    assert reader.feed_eof() is hello


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, len(HELLO)), max_size=12))
def test_any_split_of_the_stream(cuts: list[int]) -> None:
    edges = [0, *sorted(set(c for c in cuts if 0 < c < len(HELLO))), len(HELLO)]
    reader = ClientHelloReader()
    results = [reader.feed(HELLO[a:b]) for a, b in zip(edges, edges[1:])]
    assert all(result is None for result in results[:-1])
    assert results[-1] == feed_all(HELLO)
    assert reader.raw == HELLO


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_split_across_records(data: st.DataObject) -> None:
    payload = handshake_payload(HELLO)
    cuts = data.draw(st.lists(st.integers(1, len(payload) - 1), max_size=20))
    stream = records(payload, cuts)
    chunks = data.draw(st.lists(st.integers(0, len(stream)), max_size=8))
    hello = feed_all(stream, chunks)
    expected = feed_all(HELLO)
    assert hello is not None and expected is not None
    assert hello.server_name == expected.server_name and hello.alpn == expected.alpn
    assert hello.cipher_suites == expected.cipher_suites and hello.size == len(stream)


# -- garbage, mutations, limits -------------------------------------------------------------------


def _outcome(data: bytes, chunks: list[int]) -> str:
    reader = ClientHelloReader()
    try:
        edges = [0, *sorted(set(c for c in chunks if 0 < c < len(data))), len(data)]
        result = None
        for a, b in zip(edges, edges[1:]):
            result = reader.feed(data[a:b])
        if result is None:
            reader.feed_eof()
        return "hello"
    except ClientHelloError:
        return "error"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutations_only_raise_the_module_error(data: st.DataObject) -> None:
    stream = bytearray(data.draw(st.sampled_from([HELLO, HELLO_12, HELLO_NO_SNI])))
    for _ in range(data.draw(st.integers(1, 6))):
        action = data.draw(st.sampled_from(["flip", "set", "cut", "insert", "delete"]))
        at = data.draw(st.integers(0, max(0, len(stream) - 1)))
        if action == "flip" and stream:
            stream[at] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "set" and stream:
            stream[at] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del stream[at:]
        elif action == "insert":
            stream[at:at] = data.draw(st.binary(min_size=1, max_size=4))
        elif action == "delete" and stream:
            del stream[at]
    chunks = data.draw(st.lists(st.integers(0, len(stream)), max_size=5))
    assert _outcome(bytes(stream), chunks) in ("hello", "error")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=4))
def test_garbage(data: bytes, chunks: list[int]) -> None:
    assert _outcome(data, chunks) in ("hello", "error")
    # Prefixed like a handshake record, so the parser gets past the record layer.
    framed = b"\x16\x03\x01" + struct.pack(">H", len(data) + 4) + b"\x01" + struct.pack(">I", len(data))[1:] + data
    assert _outcome(framed, chunks) in ("hello", "error")


@pytest.mark.parametrize("data, message", [
    (b"G", "not a TLS handshake record (first byte 0x47)"),
    (b"\x80\x2e\x01", "SSLv2-format ClientHello: not supported"),
    (b"\x16\x02", "unknown record version 2.x"),
    (b"\x16\x03\x01\x00\x00", "empty handshake record"),
    (b"\x16\x03\x01\x40\x01", "record of 16385 bytes is over 2^14"),
    (b"\x16\x03\x01\x00\x10\x02", "expected a ClientHello, got handshake message 2"),
    (b"\x15\x03\x03\x00\x02\x02\x28", "not a TLS handshake record (first byte 0x15)"),
])
def test_early_errors(data: bytes, message: str) -> None:
    reader = ClientHelloReader()
    with pytest.raises(ClientHelloError, match=f"^{re.escape(message)}$"):
        reader.feed(data)
    with pytest.raises(ClientHelloError):  # sticky
        reader.feed(b"\x16")


def test_limits() -> None:
    payload = handshake_payload(HELLO)
    with pytest.raises(ClientHelloError, match=f"ClientHello of {len(payload) - 4} bytes is over the limit .100."):
        feed_all(HELLO[:9], max_size=100)
    with pytest.raises(ClientHelloError, match="more than 4 records"):
        feed_all(records(payload, [10, 20, 30, 40, 50]), max_records=4)
    assert feed_all(records(payload, [10, 20, 30]), max_records=4) is not None
    with pytest.raises(ClientHelloError) as caught:
        feed_all(b"\x16\x03\x01\xff\xff")
    assert caught.value.alert == ALERT_RECORD_OVERFLOW


def test_eof() -> None:
    reader = ClientHelloReader()
    with pytest.raises(ClientHelloError, match="closed before any byte"):
        reader.feed_eof()
    reader = ClientHelloReader()
    reader.feed(HELLO[:100])
    with pytest.raises(ClientHelloError, match="in the middle of the ClientHello"):
        reader.feed_eof()


# -- hand-made messages ------------------------------------------------------------------------------


def _hello(extensions: list[tuple[int, bytes]] | None, *, suites=(0xC02B, 0xC02F), version=0x0303) -> bytes:
    body = struct.pack(">H", version) + bytes(32) + b"\x00"
    body += struct.pack(">H", 2 * len(suites)) + b"".join(struct.pack(">H", s) for s in suites) + b"\x01\x00"
    if extensions is not None:
        block = b"".join(struct.pack(">HH", kind, len(data)) + data for kind, data in extensions)
        body += struct.pack(">H", len(block)) + block
    return body


def _sni(*names: bytes, kind: int = 0) -> bytes:
    entries = b"".join(bytes([kind]) + struct.pack(">H", len(n)) + n for n in names)
    return struct.pack(">H", len(entries)) + entries


def test_hand_made_messages() -> None:
    old = parse_client_hello(_hello(None, suites=(0x002F,), version=0x0301))
    assert old.versions == (0x0301,) and old.server_name is None and old.highest_version == "TLSv1.0"
    assert not old.offers_ecdsa
    assert parse_client_hello(_hello([(0, _sni(b"WWW.Example.com."))])).server_name == "www.example.com"
    # Without signature_algorithms, the ECDSA cipher suites decide.
    assert parse_client_hello(_hello([], suites=(0xC02B,))).offers_ecdsa
    assert 0xC02B in ECDSA_SUITES and not parse_client_hello(_hello([], suites=(0xC02F,))).offers_ecdsa
    sigalgs = struct.pack(">H", 4) + struct.pack(">HH", 0x0804, 0x0401)
    assert not parse_client_hello(_hello([(13, sigalgs)], suites=(0xC02B,))).offers_ecdsa
    assert parse_client_hello(_hello([(0, _sni(b"other", kind=1))])).server_name is None


@pytest.mark.parametrize("extensions, message", [
    ([(0, _sni(b"a.example")), (0, _sni(b"b.example"))], "extension 0 sent twice"),
    ([(0, _sni(b"a.example", b"b.example"))], "two host names in server_name"),
    ([(0, _sni("bücher.example".encode()))], "server_name is not a host name"),
    ([(0, _sni(b""))], "server_name is not a host name"),
    ([(0, _sni(b"a\x00b"))], "server_name is not a host name"),
    ([(0, _sni(b"a.example") + b"x")], "1 unexpected bytes after server_name extension"),
    ([(16, b"\x00\x00")], "empty ALPN protocol list"),
    ([(16, b"\x00\x02\x00\x00")], "empty ALPN protocol name"),
    ([(43, b"\x03\x03\x04\x03")], "malformed supported_versions list"),
    ([(13, b"\x00\x01\x04")], "malformed signature_algorithms list"),
])
def test_malformed_extensions(extensions, message) -> None:
    with pytest.raises(ClientHelloError, match=f"^{message}$"):
        parse_client_hello(_hello(extensions))


def test_malformed_bodies() -> None:
    good = _hello([])
    with pytest.raises(ClientHelloError, match="truncated ClientHello"):
        parse_client_hello(good[:20])
    with pytest.raises(ClientHelloError, match="unexpected bytes after ClientHello"):
        parse_client_hello(good + b"\x00")
    with pytest.raises(ClientHelloError, match="unknown protocol version 0x0201"):
        parse_client_hello(_hello([], version=0x0201))
    with pytest.raises(ClientHelloError, match="malformed cipher suite list"):
        parse_client_hello(_hello([], suites=()))
