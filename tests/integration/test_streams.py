"""lbcore._fastpath.streams: both twins accept on a real listening socket on 127.0.0.1 and
give each connection a transport with asyncio's semantics: reads, buffered writes and
flow control, half-close, close after the buffer drains, abort, a peer's reset, and
connection_lost once, from the loop. Each test runs on a uvloop loop (the worker's)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import struct
import time

import pytest
import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lbcore._fastpath import USE_EXTENSIONS, clock, sockio, streams

TWINS = sorted(streams.IMPLEMENTATIONS)
LIMIT = 10.0  # seconds any one wait may take before the test fails


def test_the_compiled_twin_is_there_in_ci():
    if USE_EXTENSIONS and "compiled" not in streams.IMPLEMENTATIONS:
        pytest.fail("lbcore._fastpath._streams is not built (pip install -e . builds it)")


class Recorder(asyncio.Protocol):
    """A protocol that records what its stream tells it (and echoes, when asked)."""

    def __init__(self, *, echo: bool = False, keep_open: bool = False) -> None:
        loop = asyncio.get_running_loop()
        self.echo = echo
        self.keep_open = keep_open
        self.events: list[object] = []
        self.data = bytearray()
        self.made = loop.create_future()
        self.lost = loop.create_future()
        self.eof = loop.create_future()
        self.resumed = loop.create_future()
        self.grew = asyncio.Event()
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.events.append("made")
        self.made.set_result(transport)

    def data_received(self, data: bytes) -> None:
        assert type(data) is bytes and data
        self.data += data
        self.grew.set()
        if self.echo:
            self.transport.write(data)

    def eof_received(self):
        self.events.append("eof")
        self.eof.set_result(None)
        return self.keep_open

    def connection_lost(self, exc) -> None:
        self.events.append("lost")
        self.lost.set_result(exc)

    def pause_writing(self) -> None:
        self.events.append("pause_writing")

    def resume_writing(self) -> None:
        self.events.append("resume_writing")
        if not self.resumed.done():
            self.resumed.set_result(None)

    async def received(self, size: int) -> bytes:
        while len(self.data) < size:
            self.grew.clear()
            await asyncio.wait_for(self.grew.wait(), LIMIT)
        return bytes(self.data)


class Server:
    """A listening socket served by one twin; each accepted connection gets a Recorder."""

    def __init__(self, twin: str, protocol: type[Recorder] | None = None, **recorder) -> None:
        self.impl = streams.IMPLEMENTATIONS[twin]
        self.protocol = protocol or Recorder
        self.recorder = recorder
        self.accepted: asyncio.Queue[Recorder] = asyncio.Queue()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(256)
        self.address = self.listener.getsockname()
        self.acceptor = self.impl.serve(asyncio.get_running_loop(), self.listener, self.factory)

    def factory(self) -> Recorder:
        made = self.protocol(**self.recorder)
        self.accepted.put_nowait(made)
        return made

    async def connect(self, rcvbuf: int | None = None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Recorder]:
        """A client connection (its receive buffer fixed at ``rcvbuf``: no autotuning)."""
        if rcvbuf is None:
            reader, writer = await asyncio.open_connection(*self.address)
        else:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, self.address)
            reader, writer = await asyncio.open_connection(sock=sock)
        server_side = await asyncio.wait_for(self.accepted.get(), LIMIT)
        await asyncio.wait_for(server_side.made, LIMIT)
        return reader, writer, server_side


def run(coro):
    """Run ``coro`` on a new uvloop loop, as a worker does, and close the loop."""
    loop = uvloop.new_event_loop()
    try:
        return loop.run_until_complete(asyncio.wait_for(coro, 60))
    finally:
        loop.close()


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("twin", TWINS)
def test_a_connection_is_read_written_and_lost_once_when_the_client_closes(twin):
    async def main():
        server = Server(twin, echo=True)
        reader, writer, conn = await server.connect()
        stream = conn.transport
        assert stream.get_extra_info("peername") == writer.get_extra_info("sockname")
        assert stream.peername == writer.get_extra_info("sockname")
        client_host, client_port = writer.get_extra_info("sockname")
        # An IPv4 peer as a number and a port, as ipaddress counts it.
        assert stream.peer_v4 == int(ipaddress.IPv4Address(client_host))
        assert stream.peer_port == client_port
        assert stream.get_extra_info("sockname") == server.address
        assert stream.fileno() >= 0 and not stream.is_closing() and stream.is_reading()
        writer.write(b"hello, ")
        assert await asyncio.wait_for(reader.readexactly(7), LIMIT) == b"hello, "
        writer.write(b"world")
        assert await asyncio.wait_for(reader.readexactly(5), LIMIT) == b"world"
        writer.close()
        assert await asyncio.wait_for(conn.lost, LIMIT) is None
        # eof_received answered None: the stream closed itself; connection_lost came once.
        assert conn.events == ["made", "eof", "lost"]
        assert stream.is_closing() and stream.fileno() == -1
        stream.write(b"dropped")  # after the connection is lost: dropped, no error
        server.acceptor.close()

    run(main())


class ClockReader(Recorder):
    """Reads the engine's clock twice in each data_received, the real clock moving between."""

    def __init__(self, *, now, **kwargs) -> None:
        super().__init__(**kwargs)
        self.now = now
        self.reads: list[tuple[float, float, float]] = []

    def data_received(self, data: bytes) -> None:
        loop_time = asyncio.get_running_loop().time()
        first = self.now()
        deadline = time.monotonic() + LIMIT
        while time.monotonic() <= first and time.monotonic() < deadline:
            pass  # until the real clock has moved past the first read
        self.reads.append((loop_time, first, self.now()))
        super().data_received(data)


@pytest.mark.parametrize("twin", TWINS)
def test_the_engines_clock_reads_one_time_per_wake_up_never_behind_the_loop(twin):
    # The compiled poller holds the compiled clock for each epoll batch; the pure twin
    # holds the engine's clock for each callback (lbcore._fastpath._clock_py).
    now = (clock.IMPLEMENTATIONS["compiled"] if twin == "compiled" else clock).Clock().now

    async def main():
        server = Server(twin, ClockReader, now=now)
        reader, writer, conn = await server.connect()
        writer.write(b"one")
        await conn.received(3)
        writer.write(b"two")
        await conn.received(6)
        after = now()  # outside a wake-up: the clock itself
        assert len(conn.reads) == 2
        (loop_1, first_1, second_1), (loop_2, first_2, second_2) = conn.reads
        assert first_1 == second_1 and first_2 == second_2
        # uvloop's time is whole milliseconds of a coarse clock, which was seen to lead
        # CLOCK_MONOTONIC by a few microseconds: "not behind" within its resolution.
        resolution = 0.001
        assert loop_1 <= first_1 + resolution and first_1 < first_2 < after
        assert loop_2 <= first_2 + resolution
        writer.close()
        await asyncio.wait_for(conn.lost, LIMIT)
        server.acceptor.close()

    run(main())


@pytest.mark.parametrize("twin", TWINS)
def test_set_protocol_hands_the_rest_of_the_connection_to_the_new_protocol(twin):
    async def main():
        server = Server(twin)
        reader, writer, first = await server.connect()
        stream = first.transport
        writer.write(b"one")
        await first.received(3)
        second = Recorder()
        stream.set_protocol(second)
        assert stream.get_protocol() is second
        writer.write(b"two")
        assert await second.received(3) == b"two"
        writer.close()
        assert await asyncio.wait_for(second.lost, LIMIT) is None
        # The first protocol heard nothing after it was replaced.
        assert bytes(first.data) == b"one" and first.events == ["made"]
        assert second.events == ["eof", "lost"]
        server.acceptor.close()

    run(main())


def typed_recorder() -> type[Recorder]:
    """A Recorder that is also a compiled StreamProtocol: a compiled stream calls its
    data_received in C (the engine's connections are such protocols)."""
    compiled = streams.IMPLEMENTATIONS.get("compiled")
    if compiled is None:
        if USE_EXTENSIONS:
            pytest.fail("lbcore._fastpath._streams is not built (pip install -e . builds it)")
        pytest.skip("the compiled streams are not in use (LBCORE_NO_EXTENSIONS)")

    # Recorder first: its data_received, not the base's, is the one found; the base's C
    # method finds it too (a Python subclass's override is looked up, as for any cpdef).
    class TypedRecorder(Recorder, compiled.StreamProtocol):
        pass

    return TypedRecorder


def test_a_compiled_protocol_is_read_into_and_replaced_as_any_other():
    typed = typed_recorder()

    async def main():
        server = Server("compiled", typed)
        reader, writer, first = await server.connect()
        stream = first.transport
        writer.write(b"one")
        assert await first.received(3) == b"one"
        # From a typed protocol to one that is not, and back: each gets what follows.
        second = Recorder()
        stream.set_protocol(second)
        writer.write(b"two")
        assert await second.received(3) == b"two"
        third = typed()
        stream.set_protocol(third)
        writer.write(b"three")
        assert await third.received(5) == b"three"
        writer.close()
        assert await asyncio.wait_for(third.lost, LIMIT) is None
        assert bytes(first.data) == b"one" and bytes(second.data) == b"two"
        assert first.events == ["made"] and second.events == [] and third.events == ["eof", "lost"]
        server.acceptor.close()

    run(main())


def test_a_compiled_factory_makes_each_connections_protocol(caplog):
    typed = typed_recorder()  # skips or fails as it does when the compiled twin is missing
    compiled = streams.IMPLEMENTATIONS["compiled"]

    class Maker(compiled.ProtocolMaker):
        """As the engine's ProtocolFactory: the acceptor calls make() in C."""

        def __init__(self, accepted):
            self.accepted = accepted
            self.calls = 0

        def make(self):
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("factory failed")
            made = Recorder() if self.calls % 2 == 0 else typed()
            self.accepted.put_nowait(made)
            return made

    async def main():
        server = Server("compiled")
        server.acceptor.close()
        server.listener = socket.socket()
        server.listener.bind(("127.0.0.1", 0))
        server.listener.listen(16)
        server.address = server.listener.getsockname()
        maker = Maker(server.accepted)
        server.acceptor = server.impl.serve(asyncio.get_running_loop(), server.listener, maker)
        # The first make() fails: that connection alone is closed.
        first = await asyncio.open_connection(*server.address)
        assert await asyncio.wait_for(first[0].read(), LIMIT) == b""
        first[1].close()
        made = []
        for _ in range(2):
            reader, writer, conn = await server.connect()
            writer.write(b"hello")
            assert await conn.received(5) == b"hello"
            writer.close()
            assert await asyncio.wait_for(conn.lost, LIMIT) is None
            assert conn.events == ["made", "eof", "lost"]
            made.append(type(conn))
        assert made == [Recorder, typed] and maker.calls == 3
        # Still a callable, as any factory (the pure twin and the loop call it).
        assert type(maker()) is Recorder and maker.calls == 4
        server.acceptor.close()

    with caplog.at_level(logging.ERROR, logger="lbcore.streams"):
        run(main())
    assert "protocol factory failed" in caplog.text


def test_a_failing_compiled_protocol_costs_its_own_connection_only(caplog):
    typed = typed_recorder()

    class Failing(typed):
        def data_received(self, data):
            raise ValueError("boom")

    async def main():
        server = Server("compiled", Failing)
        reader, writer, failing = await server.connect()
        other_server = Server("compiled", typed)
        other_reader, other_writer, other = await other_server.connect()
        writer.write(b"data")
        assert isinstance(await asyncio.wait_for(failing.lost, LIMIT), ValueError)
        assert await asyncio.wait_for(reader.read(), LIMIT) == b""
        other_writer.write(b"still here")
        assert await other.received(10) == b"still here"
        for w in (writer, other_writer):
            w.close()
        server.acceptor.close()
        other_server.acceptor.close()

    with caplog.at_level(logging.ERROR, logger="lbcore.streams"):
        run(main())
    assert "data_received failed" in caplog.text


@pytest.mark.parametrize("twin", TWINS)
def test_a_big_write_to_a_slow_reader_pauses_the_protocol_and_arrives_whole(twin):
    body = bytes(range(256)) * (16 * 1024)  # 4 MiB: far past the socket buffers set below

    async def main():
        server = Server(twin)
        # Both ends' kernel buffers fixed and small, so that the kernel cannot take the
        # whole body at once however the host's TCP autotuning is set.
        reader, writer, conn = await server.connect(rcvbuf=64 * 1024)
        stream = conn.transport
        stream.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        stream.set_write_buffer_limits(high=64 * 1024)
        assert stream.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
        stream.write(body)
        assert stream.get_write_buffer_size() > 0
        assert conn.events == ["made", "pause_writing"]
        got = await asyncio.wait_for(reader.readexactly(len(body)), LIMIT)
        assert got == body
        await asyncio.wait_for(conn.resumed, LIMIT)
        assert stream.get_write_buffer_size() == 0
        writer.close()
        await asyncio.wait_for(conn.lost, LIMIT)
        server.acceptor.close()

    run(main())


@pytest.mark.parametrize("twin", TWINS)
def test_close_sends_what_is_buffered_first_and_loses_the_connection_from_the_loop(twin):
    body = b"x" * (3 * 1024 * 1024)

    async def main():
        server = Server(twin)
        reader, writer, conn = await server.connect()
        stream = conn.transport
        stream.write(body)
        stream.write(b"and the end")  # appended behind what waits
        stream.close()
        assert stream.is_closing()
        assert "lost" not in conn.events  # never inside close()
        stream.close()  # twice: nothing more
        got = await asyncio.wait_for(reader.read(), LIMIT)  # to EOF
        assert got == body + b"and the end"
        assert await asyncio.wait_for(conn.lost, LIMIT) is None
        assert conn.events.count("lost") == 1
        writer.close()
        server.acceptor.close()

    run(main())


class Answerer(Recorder):
    """Answers each command it reads, writing from inside the stream's batch of events."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.held: list[int] = []  # the write buffer's size right after each answer

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        stream = self.transport
        if data == b"two":
            stream.write(b"first,")
            stream.write(b"second")
        elif data == b"close":
            stream.write(b"bye")
            stream.close()
        elif data == b"eof":
            stream.write(b"half")
            stream.write_eof()
        elif data == b"abort":
            stream.write(b"never")
            stream.abort()
        self.held.append(stream.get_write_buffer_size())


@pytest.mark.parametrize("twin", TWINS)
def test_writes_made_while_events_are_handled_leave_at_the_batchs_end(twin):
    """Held to the end of the batch (the stream's buffer has them on return from the
    protocol), then sent in order; a close, write_eof or abort made with them waits for
    them (abort drops them), as with bytes the socket had not taken."""

    async def main():
        server = Server(twin, protocol=Answerer, keep_open=True)
        reader, writer, conn = await server.connect()
        writer.write(b"two")
        assert await asyncio.wait_for(reader.readexactly(12), LIMIT) == b"first,second"
        assert conn.held == [12]
        reader2, writer2, conn2 = await server.connect()
        writer2.write(b"eof")
        assert await asyncio.wait_for(reader2.read(), LIMIT) == b"half"  # then the FIN
        assert conn2.held == [4] and not conn2.lost.done()
        reader3, writer3, conn3 = await server.connect()
        writer3.write(b"close")
        assert await asyncio.wait_for(reader3.read(), LIMIT) == b"bye"
        assert await asyncio.wait_for(conn3.lost, LIMIT) is None
        reader4, writer4, conn4 = await server.connect()
        writer4.write(b"abort")
        assert await asyncio.wait_for(conn4.lost, LIMIT) is None
        assert conn4.held == [0]
        try:
            assert await asyncio.wait_for(reader4.read(), LIMIT) == b""
        except ConnectionResetError:  # the client's unread command may reset it
            pass
        for w in (writer, writer2, writer3, writer4):
            w.close()
        server.acceptor.close()

    run(main())


class SlowAnswerer(Recorder):
    """Answers at once, then (for b"slow") works 5 ms: an expensive event, as a full
    RSA handshake is. Records, when it reads, how much of the others' answers waits."""

    others: list["SlowAnswerer"] = []

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.waiting_others: list[int] = []
        SlowAnswerer.others.append(self)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self.waiting_others.append(sum(o.transport.get_write_buffer_size() for o in self.others if o is not self))
        self.transport.write(b"answer:" + data)
        if data == b"slow":
            deadline = time.monotonic() + 0.005
            while time.monotonic() < deadline:
                pass


@pytest.mark.parametrize("twin", TWINS)
def test_an_expensive_event_does_not_hold_the_others_answers(twin):
    """Held writes leave once they have waited the hold limit (100 µs), checked after
    each event (compiled) or at the next write (pure): after 5 ms of work on one
    connection, the answer written before it is on its way, not held to the batch's end."""

    async def main():
        SlowAnswerer.others = []
        server = Server(twin, protocol=SlowAnswerer)
        clients = [await server.connect() for _ in range(3)]
        for _, writer, _ in clients:  # all three readable in the server's next batch
            writer.write(b"slow")
        for reader, _, _ in clients:
            assert await asyncio.wait_for(reader.readexactly(11), LIMIT) == b"answer:slow"
        # Whichever read came later in the batch found the earlier answers sent.
        assert all(conn.waiting_others == [0] for _, _, conn in clients), [c.waiting_others for _, _, c in clients]
        for _, writer, _ in clients:
            writer.close()
        server.acceptor.close()

    run(main())


@pytest.mark.parametrize("twin", TWINS)
def test_a_write_from_outside_a_batch_is_sent(twin):
    async def main():
        server = Server(twin)
        reader, writer, conn = await server.connect()
        stream = conn.transport
        stream.write(b"from a coroutine")
        if twin == "compiled":
            assert stream.get_write_buffer_size() == 0  # no batch to wait for: sent at once
        assert await asyncio.wait_for(reader.readexactly(16), LIMIT) == b"from a coroutine"
        writer.close()
        server.acceptor.close()

    run(main())


@pytest.mark.parametrize("twin", TWINS)
def test_abort_drops_the_buffer_and_closes_at_once(twin):
    async def main():
        server = Server(twin)
        reader, writer, conn = await server.connect()
        stream = conn.transport
        stream.write(b"y" * (8 * 1024 * 1024))
        stream.abort()
        assert "lost" not in conn.events
        assert await asyncio.wait_for(conn.lost, LIMIT) is None
        assert stream.get_write_buffer_size() == 0
        try:
            got = await asyncio.wait_for(reader.read(), LIMIT)
        except ConnectionResetError:  # unread bytes in either direction may reset it
            got = b""
        assert len(got) < 8 * 1024 * 1024
        writer.close()
        server.acceptor.close()

    run(main())


@pytest.mark.parametrize("twin", TWINS)
def test_half_close_both_ways(twin):
    async def main():
        server = Server(twin, keep_open=True)
        reader, writer, conn = await server.connect()
        stream = conn.transport
        writer.write(b"request")
        writer.write_eof()
        await asyncio.wait_for(conn.eof, LIMIT)
        assert bytes(conn.data) == b"request"
        assert not stream.is_closing()  # eof_received said keep it open
        stream.write(b"answer after the client's EOF")
        assert stream.can_write_eof()
        stream.write_eof()
        with pytest.raises(RuntimeError):
            stream.write(b"more")
        assert await asyncio.wait_for(reader.read(), LIMIT) == b"answer after the client's EOF"
        stream.close()
        assert await asyncio.wait_for(conn.lost, LIMIT) is None
        writer.close()
        server.acceptor.close()

    run(main())


def segments_sent(sock) -> int:
    """Linux's count of TCP segments ``sock`` has sent (struct tcp_info's tcpi_segs_out)."""
    return struct.unpack_from("I", sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256), 136)[0]


class AnswersThenShuts(Recorder):
    """Answers the first bytes and shuts its side, from data_received (as a TLS
    connection's close does: its last records, then write_eof, within one batch)."""

    def __init__(self, answer: bytes = b"the last answer", sndbuf: int | None = None, **recorder) -> None:
        super().__init__(**recorder)
        self.answer = answer
        self.sndbuf = sndbuf

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        sock = self.transport.get_extra_info("socket")
        if self.sndbuf is not None:  # no autotuning: the socket takes the answer in parts
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)
        self.segments_before = segments_sent(sock)
        self.transport.write(self.answer)
        self.transport.write_eof()


async def close_after_the_client(server: Server, writer: asyncio.StreamWriter, conn: Recorder) -> None:
    """A half-closed stream's end: the client closes, the stream sees its EOF and is
    closed, then lost; the acceptor stops."""
    writer.close()
    assert await asyncio.wait_for(conn.eof, LIMIT) is None
    conn.transport.close()
    await asyncio.wait_for(conn.lost, LIMIT)
    server.acceptor.close()


@pytest.mark.parametrize("twin", TWINS)
def test_the_last_bytes_before_write_eof_leave_with_the_fin_in_one_segment(twin):
    async def main():
        server = Server(twin, AnswersThenShuts, keep_open=True)
        reader, writer, conn = await server.connect()
        writer.write(b"request")
        assert await asyncio.wait_for(reader.read(), LIMIT) == b"the last answer"  # then EOF
        # One segment more, data and FIN together (the peer is woken once, and the
        # sender's CPU, which on loopback also runs the receiver's side, processes
        # one segment, not two).
        assert segments_sent(conn.transport.get_extra_info("socket")) - conn.segments_before == 1
        await close_after_the_client(server, writer, conn)

    run(main())


@pytest.mark.parametrize("twin", TWINS)
def test_an_answer_the_socket_takes_in_parts_before_write_eof_arrives_whole_then_the_eof(twin):
    answer = bytes(range(256)) * 8192  # 2 MiB: far more than the client's small buffer holds
    async def main():
        server = Server(twin, AnswersThenShuts, answer=answer, sndbuf=8192, keep_open=True)
        reader, writer, conn = await server.connect(rcvbuf=4096)
        writer.write(b"request")
        await asyncio.wait_for(conn.grew.wait(), LIMIT)
        assert conn.transport.get_write_buffer_size() > 0  # the rest waits for the socket
        assert await asyncio.wait_for(reader.read(), LIMIT) == answer  # then EOF
        await close_after_the_client(server, writer, conn)

    run(main())


@pytest.mark.parametrize("twin", TWINS)
def test_paused_reading_delivers_nothing_until_resumed(twin):
    async def main():
        server = Server(twin)
        reader, writer, conn = await server.connect()
        stream = conn.transport
        stream.pause_reading()
        assert not stream.is_reading()
        writer.write(b"while paused")
        await writer.drain()
        # A round trip through another connection proves the loop ran its I/O since.
        _r2, w2, conn2 = await server.connect()
        w2.write(b"ping")
        await conn2.received(4)
        assert conn.data == b""
        stream.resume_reading()
        assert stream.is_reading()
        assert await conn.received(12) == b"while paused"
        for w in (writer, w2):
            w.close()
        await asyncio.wait_for(asyncio.gather(conn.lost, conn2.lost), LIMIT)
        server.acceptor.close()

    run(main())


@pytest.mark.parametrize("twin", TWINS)
def test_a_reset_by_the_peer_is_a_lost_connection_with_its_error(twin):
    async def main():
        server = Server(twin)
        client = socket.create_connection(server.address)
        conn = await asyncio.wait_for(server.accepted.get(), LIMIT)
        await asyncio.wait_for(conn.made, LIMIT)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # RST
        exc = await asyncio.wait_for(conn.lost, LIMIT)
        # Linux reports the reset to the next read: ECONNRESET (or an EOF if read first).
        assert exc is None or isinstance(exc, ConnectionResetError)
        assert conn.transport.is_closing()
        server.acceptor.close()

    run(main())


@pytest.mark.parametrize("twin", TWINS)
def test_a_write_refused_by_a_reset_peer_loses_the_connection_with_the_error(twin):
    async def main():
        server = Server(twin)
        client = socket.create_connection(server.address)
        conn = await asyncio.wait_for(server.accepted.get(), LIMIT)
        stream = await asyncio.wait_for(conn.made, LIMIT)
        stream.pause_reading()  # the reset is seen by a write, not a read
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        for _ in range(100):  # bounded: the reset is there by the first or second write
            stream.write(b"z" * 1024)
            if conn.lost.done():
                break
            await asyncio.sleep(0)  # let the loop run (not a synchronisation: bounded retries)
        assert isinstance(await asyncio.wait_for(conn.lost, LIMIT), (BrokenPipeError, ConnectionResetError))
        server.acceptor.close()

    run(main())


@pytest.mark.parametrize("twin", TWINS)
def test_write_takes_bytes_like_objects_only(twin):
    async def main():
        server = Server(twin, echo=False)
        reader, writer, conn = await server.connect()
        stream = conn.transport
        with pytest.raises(TypeError):
            stream.write("text")
        stream.write(bytearray(b"ab"))
        stream.write(memoryview(b"cd"))
        stream.writelines([b"e", b"f"])
        stream.write(b"")
        assert await asyncio.wait_for(reader.readexactly(6), LIMIT) == b"abcdef"
        writer.close()
        await asyncio.wait_for(conn.lost, LIMIT)
        server.acceptor.close()

    run(main())


@pytest.mark.parametrize("twin", TWINS)
def test_more_connections_at_once_than_one_accept_batch_are_all_served(twin):
    count = 3 * streams.IMPLEMENTATIONS[twin].ACCEPT_BATCH + 5

    async def main():
        server = Server(twin, echo=True)
        clients = [socket.create_connection(server.address) for _ in range(count)]  # queued in the backlog
        conns = [await asyncio.wait_for(server.accepted.get(), LIMIT) for _ in range(count)]
        for i, client in enumerate(clients):
            client.sendall(b"%d;" % i)
        got = await asyncio.wait_for(asyncio.gather(*(c.received(1) for c in conns)), LIMIT)
        assert sorted(g.rstrip(b";") for g in got) == sorted(b"%d" % i for i in range(count))
        for client in clients:
            client.close()
        await asyncio.wait_for(asyncio.gather(*(c.lost for c in conns)), LIMIT)
        server.acceptor.close()

    run(main())


@pytest.mark.parametrize("twin", TWINS)
def test_closing_the_acceptor_refuses_new_connections_and_keeps_the_open_ones(twin):
    async def main():
        server = Server(twin, echo=True)
        reader, writer, conn = await server.connect()
        assert server.acceptor.is_serving()
        server.acceptor.close()
        server.acceptor.close()
        assert not server.acceptor.is_serving()
        assert server.listener.fileno() == -1  # the acceptor owned it
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(server.address, timeout=LIMIT)
        writer.write(b"still here")
        assert await asyncio.wait_for(reader.readexactly(10), LIMIT) == b"still here"
        writer.close()
        await asyncio.wait_for(conn.lost, LIMIT)

    run(main())


@pytest.mark.parametrize("twin", TWINS)
def test_a_failing_protocol_costs_its_own_connection_only(twin, caplog):
    class Failing(Recorder):
        def data_received(self, data):
            raise ValueError("boom")

    async def main():
        server = Server(twin)
        server.acceptor.close()
        server.listener = socket.socket()
        server.listener.bind(("127.0.0.1", 0))
        server.listener.listen(16)
        server.address = server.listener.getsockname()
        calls = []

        def factory():
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("factory failed")
            made = Failing()
            server.accepted.put_nowait(made)
            return made

        server.acceptor = server.impl.serve(asyncio.get_running_loop(), server.listener, factory)
        first = await asyncio.open_connection(*server.address)  # the factory fails: closed
        assert await asyncio.wait_for(first[0].read(), LIMIT) == b""
        reader, writer = await asyncio.open_connection(*server.address)
        conn = await asyncio.wait_for(server.accepted.get(), LIMIT)
        writer.write(b"data")
        exc = await asyncio.wait_for(conn.lost, LIMIT)
        assert isinstance(exc, ValueError)
        assert await asyncio.wait_for(reader.read(), LIMIT) == b""
        server.acceptor.close()
        for w in (first[1], writer):
            w.close()

    with caplog.at_level(logging.ERROR, logger="lbcore.streams"):
        run(main())
    assert "protocol factory failed" in caplog.text and "data_received failed" in caplog.text


@pytest.mark.parametrize("twin", TWINS)
def test_the_socket_view_sets_options_and_leaves_the_descriptor_to_the_stream(twin):
    async def main():
        server = Server(twin, echo=True)
        reader, writer, conn = await server.connect()
        stream = conn.transport
        sock = stream.get_extra_info("socket")
        assert sock is stream.get_extra_info("socket")
        assert sock.fileno() == stream.fileno()
        # Set once on the listening socket, which the accepted ones inherit from.
        assert server.listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK)
        assert sock.getpeername() == writer.get_extra_info("sockname")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
        writer.write(b"ok")
        assert await asyncio.wait_for(reader.readexactly(2), LIMIT) == b"ok"
        writer.close()
        await asyncio.wait_for(conn.lost, LIMIT)
        with pytest.raises(OSError):
            sock.getsockname()
        server.acceptor.close()

    run(main())


@pytest.mark.parametrize("twin", TWINS)
def test_without_nodelay_on_the_listening_socket_each_accepted_one_gets_it(twin, monkeypatch):
    monkeypatch.setattr(streams.IMPLEMENTATIONS[twin], "nodelay_each", lambda sock: True)

    async def main():
        server = Server(twin, echo=True)
        reader, writer, conn = await server.connect()
        assert not server.listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert conn.transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        writer.close()
        await asyncio.wait_for(conn.lost, LIMIT)
        server.acceptor.close()

    run(main())


@pytest.mark.parametrize("twin", TWINS)
def test_every_descriptor_is_closed_once_the_last_connection_is_lost(twin):
    async def main():
        server = Server(twin, echo=True)
        reader, writer, conn = await server.connect()
        writer.write(b"x")
        await conn.received(1)
        server.acceptor.close()
        writer.close()
        await asyncio.wait_for(conn.lost, LIMIT)

    before = open_descriptors()
    run(main())
    assert open_descriptors() <= before


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(st.binary(min_size=1, max_size=70_000), min_size=1, max_size=8))
def test_both_twins_deliver_the_same_bytes_in_order(pieces):
    async def main(twin):
        server = Server(twin, echo=True)
        reader, writer, conn = await server.connect()
        for piece in pieces:
            writer.write(piece)
        total = sum(map(len, pieces))
        echoed = await asyncio.wait_for(reader.readexactly(total), LIMIT)
        writer.close()
        await asyncio.wait_for(conn.lost, LIMIT)
        server.acceptor.close()
        return echoed

    results = {twin: run(main(twin)) for twin in TWINS}
    assert all(r == b"".join(pieces) for r in results.values())


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize("sockio_twin", sorted(sockio.IMPLEMENTATIONS))
def test_sockio_corks_a_stream_by_its_descriptor(twin, sockio_twin):
    async def main():
        server = Server(twin)
        reader, writer, conn = await server.connect()
        stream = conn.transport
        sockio.IMPLEMENTATIONS[sockio_twin].cork(stream)  # write_last's cork: the engine hands it the stream
        assert stream.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK) == 1
        stream.write(b"corked, then closed")
        stream.close()
        assert await asyncio.wait_for(reader.read(), LIMIT) == b"corked, then closed"
        await asyncio.wait_for(conn.lost, LIMIT)
        with pytest.raises(OSError):
            sockio.IMPLEMENTATIONS[sockio_twin].cork(stream)  # closed: EBADF
        writer.close()
        server.acceptor.close()

    run(main())


EMFILE_SERVER = r"""
import asyncio, logging, resource, socket, sys
import uvloop
from lbcore._fastpath import streams
impl = streams.IMPLEMENTATIONS[sys.argv[1]]
logging.basicConfig(stream=sys.stderr, level=logging.ERROR, format="%(message)s")

class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
    def data_received(self, data):
        self.transport.write(data)
    def eof_received(self):
        return False

async def main():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    acceptor = impl.serve(asyncio.get_running_loop(), listener, Echo)
    # Room for two more descriptors (the two lowest free numbers): two connections, then
    # EMFILE on the third.
    import os
    def is_open(fd):
        try:
            os.fstat(fd)
            return True
        except OSError:  # the listing's own descriptor, closed since
            return False

    taken = {int(fd) for fd in os.listdir("/proc/self/fd") if is_open(int(fd))}
    free = [n for n in range(max(taken) + 3) if n not in taken]
    resource.setrlimit(resource.RLIMIT_NOFILE, (free[1] + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    print(listener.getsockname()[1], flush=True)
    await asyncio.get_running_loop().create_future()

uvloop.run(main())
"""


@pytest.mark.parametrize("twin", TWINS)
def test_out_of_descriptors_the_acceptor_pauses_and_serves_the_rest_once_some_are_free(twin):
    import subprocess
    import sys

    server = subprocess.Popen([sys.executable, "-c", EMFILE_SERVER, twin], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        clients = [socket.create_connection(("127.0.0.1", port), timeout=LIMIT) for _ in range(4)]
        clients[0].sendall(b"first")
        assert clients[0].recv(100) == b"first"
        clients[1].sendall(b"second")
        assert clients[1].recv(100) == b"second"
        # The third and fourth wait in the backlog; the server said why it stopped accepting.
        line = server.stderr.readline()
        assert "cannot accept" in line and "Too many open files" in line
        clients[2].setblocking(False)
        clients[2].sendall(b"early")
        with pytest.raises(BlockingIOError):  # not accepted: nobody echoes (the echo would be immediate)
            clients[2].recv(100)
        clients[2].setblocking(True)
        clients[2].settimeout(LIMIT)
        clients[0].close()
        clients[1].close()
        # Descriptors are free again: after its pause the acceptor takes the waiting ones.
        assert clients[2].recv(100) == b"early"
        for i, client in enumerate(clients[2:]):
            client.sendall(b"later %d" % i)
            assert client.recv(100) == b"later %d" % i
        for client in clients[2:]:
            client.close()
    finally:
        server.kill()
        server.wait()
        server.stdout.close()
        server.stderr.close()


# -- connect: a member connection on a stream -------------------------------------------------


@pytest.mark.parametrize("twin", TWINS)
def test_connect_gives_a_stream_to_an_address_as_create_connection_does(twin):
    impl = streams.IMPLEMENTATIONS[twin]

    async def main():
        got: asyncio.Queue[bytes] = asyncio.Queue()

        async def member(reader, writer):
            got.put_nowait(await reader.readexactly(5))
            writer.write(b"reply")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(member, "127.0.0.1", 0)
        host, port = server.sockets[0].getsockname()[:2]
        stream, conn = await impl.connect(asyncio.get_running_loop(), Recorder, host, port)
        assert conn.events == ["made"] and conn.transport is stream
        assert stream.get_extra_info("peername") == (host, port)
        assert (stream.peer_v4, stream.peer_port) == (int(ipaddress.IPv4Address(host)), port)
        assert stream.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        stream.write(b"hello")
        assert await asyncio.wait_for(got.get(), LIMIT) == b"hello"
        assert await conn.received(5) == b"reply"
        assert await asyncio.wait_for(conn.lost, LIMIT) is None  # the member closed: EOF, then lost
        assert conn.events == ["made", "eof", "lost"]
        server.close()
        await server.wait_closed()

    run(main())


@pytest.mark.parametrize("twin", TWINS)
def test_connect_raises_the_connect_error_and_refuses_names(twin):
    impl = streams.IMPLEMENTATIONS[twin]
    assert impl.ip_family("127.0.0.1") == socket.AF_INET and impl.ip_family("::1") == socket.AF_INET6
    assert impl.ip_family("localhost") == 0 and impl.ip_family("app.internal") == 0

    async def main():
        loop = asyncio.get_running_loop()
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        closed.close()  # nothing listens there
        with pytest.raises(ConnectionRefusedError):
            await impl.connect(loop, Recorder, "127.0.0.1", port)
        with pytest.raises(ValueError):
            await impl.connect(loop, Recorder, "localhost", port)
        task = asyncio.ensure_future(impl.connect(loop, Recorder, "127.0.0.1", port))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    before = open_descriptors()
    run(main())
    assert open_descriptors() <= before  # no socket left behind by a failed or cancelled connect
