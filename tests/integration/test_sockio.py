"""lbcore._fastpath.sockio: both twins send datagrams in order, stop at the first one the
kernel refuses and raise its error only when it is the first, on real sockets on 127.0.0.1
(and a unix datagram socket, syslog+unix's kind); and both set TCP_CORK, or say why not."""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lbcore._fastpath import USE_EXTENSIONS, sockio

TWINS = sorted(sockio.IMPLEMENTATIONS)
TOO_BIG = 70_000  # over UDP's 65,507-byte payload: EMSGSIZE, every time


def test_the_compiled_twin_is_there_in_ci():
    if USE_EXTENSIONS and "compiled" not in sockio.IMPLEMENTATIONS:
        pytest.fail("lbcore._fastpath._sockio is not built (pip install -e . builds it)")


class Pair:
    """A connected UDP sender and the bound receiver it sends to."""

    def __init__(self) -> None:
        self.receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.receiver.bind(("127.0.0.1", 0))
        self.receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sender.setblocking(False)
        self.sender.connect(self.receiver.getsockname())

    def received(self, count: int) -> list[bytes]:
        self.receiver.settimeout(5)
        got = [self.receiver.recv(1 << 17) for _ in range(count)]
        self.receiver.setblocking(False)
        with pytest.raises(BlockingIOError):  # and nothing more
            self.receiver.recv(1 << 17)
        return got

    def close(self) -> None:
        self.sender.close()
        self.receiver.close()


@pytest.fixture
def pair():
    p = Pair()
    yield p
    p.close()


def impl(twin: str) -> Any:
    return sockio.IMPLEMENTATIONS[twin]


@pytest.mark.parametrize("twin", TWINS)
def test_every_datagram_goes_out_in_order(pair, twin):
    datagrams = [f"<134>1 line {i}".encode() * (1 + i % 7) for i in range(300)]  # several batches
    assert impl(twin).send_datagrams(pair.sender, datagrams) == 300
    assert pair.received(300) == datagrams


@pytest.mark.parametrize("twin", TWINS)
def test_start_skips_what_was_sent_and_a_tuple_is_a_sequence_too(pair, twin):
    datagrams = (b"a", b"b", b"c", b"d")
    assert impl(twin).send_datagrams(pair.sender, datagrams, 2) == 2
    assert impl(twin).send_datagrams(pair.sender, datagrams, 4) == 0
    assert impl(twin).send_datagrams(pair.sender, [], 0) == 0
    assert pair.received(2) == [b"c", b"d"]


@pytest.mark.parametrize("twin", TWINS)
def test_it_stops_at_the_first_refused_and_a_call_from_there_says_why(pair, twin):
    send = impl(twin).send_datagrams
    datagrams = [b"one", b"two", b"x" * TOO_BIG, b"four"]
    assert send(pair.sender, datagrams) == 2
    with pytest.raises(OSError) as failed:
        send(pair.sender, datagrams, 2)
    assert failed.value.errno == errno.EMSGSIZE
    assert send(pair.sender, datagrams, 3) == 1
    assert pair.received(3) == [b"one", b"two", b"four"]


@pytest.mark.parametrize("twin", TWINS)
def test_a_would_block_is_a_blocking_io_error(twin):
    # A unix datagram socket whose peer does not read: the sender's queue fills.
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        left.setblocking(False)
        datagrams = [b"y" * 1024] * 4096
        sent = impl(twin).send_datagrams(left, datagrams)
        assert 0 < sent < len(datagrams)
        with pytest.raises(BlockingIOError):
            impl(twin).send_datagrams(left, datagrams, sent)
    finally:
        left.close()
        right.close()


@pytest.mark.parametrize("twin", TWINS)
def test_a_unix_datagram_socket_by_path(tmp_path: Path, twin):
    path = str(tmp_path / "log.sock")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(path)
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sender.setblocking(False)
    try:
        sender.connect(path)
        assert impl(twin).send_datagrams(sender, [b"first", b"second"]) == 2
        receiver.settimeout(5)
        assert [receiver.recv(100), receiver.recv(100)] == [b"first", b"second"]
    finally:
        sender.close()
        receiver.close()


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize("bad", ["text", bytearray(b"x"), memoryview(b"x"), None])
def test_only_bytes_and_nothing_is_sent_before_the_type_error(pair, twin, bad):
    with pytest.raises(TypeError, match="a datagram must be bytes"):
        impl(twin).send_datagrams(pair.sender, [b"ok", bad])
    assert pair.received(0) == []


@pytest.mark.parametrize("twin", TWINS)
def test_a_negative_start_is_refused(pair, twin):
    with pytest.raises(ValueError, match="start must be >= 0"):
        impl(twin).send_datagrams(pair.sender, [b"a"], -1)


@pytest.mark.parametrize("twin", TWINS)
def test_a_closed_socket_raises(twin):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.close()
    with pytest.raises(OSError):
        impl(twin).send_datagrams(sock, [b"a"])


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize("timeout", [None, 0.5])
def test_only_a_non_blocking_socket(pair, twin, timeout):
    # The compiled twin cannot honour a timeout or block without holding the GIL.
    pair.sender.settimeout(timeout)
    with pytest.raises(ValueError, match="non-blocking"):
        impl(twin).send_datagrams(pair.sender, [b"a"])
    assert pair.received(0) == []


class Shrinking:
    """len() says 3, iteration gives one item: a sequence that changed under us."""

    def __len__(self) -> int:
        return 3

    def __getitem__(self, index: int) -> bytes:
        if not 0 <= index < 3:
            raise IndexError(index)
        return b"indexed"

    def __iter__(self):
        yield b"iterated"


@pytest.mark.parametrize("twin", TWINS)
def test_any_iterable_is_read_once_into_a_list(pair, twin):
    assert impl(twin).send_datagrams(pair.sender, Shrinking()) == 1
    assert impl(twin).send_datagrams(pair.sender, (d for d in [b"g1", b"g2"])) == 2
    assert pair.received(3) == [b"iterated", b"g1", b"g2"]


SIZES = st.lists(st.one_of(st.integers(0, 2000), st.just(TOO_BIG)), max_size=150)


@pytest.mark.skipif(len(TWINS) < 2, reason="one twin: nothing to compare")
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=SIZES, start=st.integers(0, 20))
def test_the_twins_agree(sizes: list[int], start: int):
    """Same datagrams in: the same datagrams received, the same errors at the same ones
    (the compiled twin sends up to BATCH per call, the pure one BATCH=1)."""
    datagrams = [bytes([65 + i % 26]) * size for i, size in enumerate(sizes)]
    outcomes = {}
    for twin in TWINS:
        p = Pair()
        try:
            errors, sent_total = [], 0
            index = min(start, len(datagrams))
            while index < len(datagrams):
                try:
                    sent = impl(twin).send_datagrams(p.sender, datagrams, index)
                    assert sent > 0
                    index += sent
                    sent_total += sent
                except OSError as exc:
                    errors.append((index, exc.errno))
                    index += 1
            outcomes[twin] = (errors, p.received(sent_total))
        finally:
            p.close()
    assert outcomes["compiled"] == outcomes["pure"]
    expected = [(i, errno.EMSGSIZE) for i, size in enumerate(sizes) if i >= start and size == TOO_BIG]
    assert outcomes["pure"][0] == expected


@pytest.mark.parametrize("twin", TWINS)
def test_cork_sets_tcp_cork_on_the_descriptor(twin):
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    try:
        assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK) == 0
        impl(twin).cork(client)
        assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK) == 1
    finally:
        client.close()
        server.close()


@pytest.mark.parametrize("twin", TWINS)
def test_cork_says_why_it_cannot(twin):
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # a unix listener's connection
    try:
        with pytest.raises(OSError) as not_tcp:
            impl(twin).cork(unix)
        assert not_tcp.value.errno == errno.EOPNOTSUPP
    finally:
        unix.close()
    with pytest.raises(OSError) as closed:
        impl(twin).cork(unix)
    assert closed.value.errno == errno.EBADF


@pytest.mark.parametrize("twin", TWINS)
def test_a_descriptor_writer_corks_as_cork_does_on_the_descriptor(twin):
    writer = impl(twin).DescriptorWriter()
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        writer.cork(client.fileno())
        assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK) == 1
        with pytest.raises(OSError) as not_tcp:
            writer.cork(unix.fileno())
        assert not_tcp.value.errno == errno.EOPNOTSUPP
        with pytest.raises(OSError) as closed:
            writer.cork(-1)  # a stream's fileno() once it is lost
        assert closed.value.errno == errno.EBADF
    finally:
        unix.close()
        client.close()
        server.close()


# -- encode_datagrams ------------------------------------------------------------------------


@pytest.mark.parametrize("name", TWINS)
def test_encode_datagrams_ascii_escapes_and_cuts(name):
    encode = sockio.IMPLEMENTATIONS[name].encode_datagrams

    class Text(str):
        pass

    got = encode(["abc", "", "caf\u00e9 \u2603", "x" * 20, Text("sub")], 10)
    assert got == [b"abc", b"", b"caf\\xe9 \\u", b"x" * 10, b"sub"]
    assert all(type(item) is bytes for item in got)
    assert encode(iter(["a", "b"]), 0) == [b"", b""]


@pytest.mark.parametrize("name", TWINS)
def test_encode_datagrams_refuses_what_is_not_text(name):
    encode = sockio.IMPLEMENTATIONS[name].encode_datagrams
    with pytest.raises(AttributeError):
        encode([b"bytes"], 10)
    with pytest.raises(ValueError, match="limit"):
        encode(["a"], -1)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(messages=st.lists(st.text(max_size=40)), limit=st.integers(0, 50))
def test_encode_datagrams_twins_agree(messages, limit):
    results = {name: sockio.IMPLEMENTATIONS[name].encode_datagrams(messages, limit) for name in TWINS}
    assert results["pure"] == [m.encode("ascii", "backslashreplace")[:limit] for m in messages]
    for name in TWINS:
        assert results[name] == results["pure"]


@pytest.fixture
def connected():
    """A TCP connection on 127.0.0.1: (the accepted end, the client end)."""
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    accepted, _ = server.accept()
    server.close()
    yield accepted, client
    accepted.close()
    client.close()


@pytest.mark.parametrize("twin", TWINS)
def test_peer_name_is_getpeername(connected, twin):
    accepted, client = connected
    assert impl(twin).peer_name(accepted) == accepted.getpeername() == client.getsockname()


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize("host", ["127.0.0.1", "127.10.200.9", "127.255.0.99"])
def test_peer_name_writes_every_octet(twin, host):
    # One, two and three digits, zeros inside: what inet_ntop writes.
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.socket()
    client.bind((host, 0))
    client.connect(server.getsockname())
    accepted, peer = server.accept()
    with server, client, accepted:
        assert impl(twin).peer_name(accepted) == peer == (host, client.getsockname()[1])


@pytest.mark.parametrize("twin", TWINS)
def test_peer_name_of_other_families_is_the_socket_modules(twin, tmp_path: Path):
    left, right = socket.socketpair()
    with left, right:
        assert impl(twin).peer_name(left) == left.getpeername()
    if socket.has_ipv6:
        try:
            server = socket.create_server(("::1", 0), family=socket.AF_INET6)
        except OSError:  # no IPv6 loopback in this namespace
            return
        client = socket.create_connection(server.getsockname()[:2])
        accepted, _ = server.accept()
        with server, client, accepted:
            assert impl(twin).peer_name(accepted) == accepted.getpeername()


@pytest.mark.parametrize("twin", TWINS)
def test_peer_name_of_a_socket_without_a_peer_is_none(twin):
    unconnected = socket.socket()
    with unconnected:
        assert impl(twin).peer_name(unconnected) is None  # ENOTCONN
    closed = socket.socket()
    closed.close()
    assert impl(twin).peer_name(closed) is None  # no descriptor


@pytest.mark.parametrize("twin", TWINS)
def test_send_now_sends_what_the_kernel_takes_and_never_blocks(connected, twin):
    accepted, client = connected
    accepted.setblocking(False)
    assert impl(twin).send_now(accepted, b"hello") == 5
    assert client.recv(16) == b"hello"
    # Fill the way to a client that reads nothing: the kernel takes less, then nothing.
    accepted.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    block = b"z" * 65536
    counts = [impl(twin).send_now(accepted, block) for _ in range(200)]
    assert counts[-1] == 0 and all(0 <= n <= len(block) for n in counts)
    assert any(0 < n < len(block) for n in counts) or counts[0] == len(block)


@pytest.mark.parametrize("twin", TWINS)
def test_a_descriptor_writer_sends_as_send_now_does_on_the_descriptor(connected, twin):
    accepted, client = connected
    accepted.setblocking(False)
    writer = impl(twin).DescriptorWriter()
    fd = accepted.fileno()
    assert writer.send_now(fd, b"hello") == 5
    assert client.recv(16) == b"hello"
    assert writer.send_now(fd, bytearray(b"x")) == 0 and writer.send_now(fd, "x") == 0
    accepted.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    block = b"z" * 65536
    counts = [writer.send_now(fd, block) for _ in range(200)]
    assert counts[-1] == 0 and all(0 <= n <= len(block) for n in counts)
    assert writer.send_now(-1, b"x") == -1  # no descriptor


@pytest.mark.parametrize("twin", TWINS)
def test_a_descriptor_writer_says_minus_one_when_the_peer_is_gone(twin):
    left, right = socket.socketpair()
    left.setblocking(False)
    right.close()
    assert impl(twin).DescriptorWriter().send_now(left.fileno(), b"after the peer closed") == -1  # EPIPE, no SIGPIPE
    left.close()


@pytest.mark.parametrize("twin", TWINS)
def test_send_now_says_minus_one_on_an_error_and_zero_for_what_is_not_bytes(twin):
    left, right = socket.socketpair()
    left.setblocking(False)
    assert impl(twin).send_now(left, bytearray(b"x")) == 0 and impl(twin).send_now(left, "x") == 0
    right.close()
    assert impl(twin).send_now(left, b"after the peer closed") == -1  # EPIPE, and no SIGPIPE
    left.close()
    assert impl(twin).send_now(left, b"x") == -1  # no descriptor
