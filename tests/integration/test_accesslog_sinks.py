"""Access-log sinks on real descriptors: a file (with logrotate's rename + reopen), stdout,
a pipe nobody reads, syslog over UDP on 127.0.0.1 and over a unix datagram socket."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import re
import select
import socket
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest
import uvloop

from lbcore.proxy.accesslog import AccessLog, AccessLogs, AccessRecord
from lbcore.proxy.accesslog_format import format_json, format_text
from lbcore.proxy import accesslog_sinks
from lbcore.proxy.accesslog_sinks import MAX_DATAGRAM, PIPE_BUF, StreamSink, unsent_frames
from lbcore.spec import AccessLogSettings, LogTarget, parse_spec

RFC5424 = re.compile(r"<(?P<pri>\d{1,3})>(?P<version>1) (?P<timestamp>\S+) (?P<hostname>\S+) (?P<app>\S+) "
                     r"(?P<procid>\S+) (?P<msgid>\S+) (?P<sd>-) (?P<msg>.*)\Z", re.DOTALL)
RECV_TIMEOUT = 5.0  # a bound on waiting for a datagram that is already on its way


def record(n: int = 0, **changes: Any) -> AccessRecord:
    values: dict[str, Any] = dict(
        accepted=time.time(), started=0.0, client_ip="127.0.0.1", client_port=40000 + n, listener="web",
        pool="www", member="w1", method="GET", target=f"/item/{n}", host="example.test", user_agent="test",
        status=200, bytes_out=100 + n, t_request=0.001, t_queue=0.0, t_connect=0.0005, t_first_byte=0.002,
        t_total=0.003,
    )
    values.update(changes)
    return AccessRecord(**values)


def port_of(line: str) -> int:
    return int(line.split(" ", 1)[0].rsplit(":", 1)[1])


# -- file ---------------------------------------------------------------------------------------------


def test_file_append_and_reopen_after_rename(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.write_text("an older line\n")
    access_log = AccessLog(AccessLogSettings(format="text", target=f"file:{path}"))
    try:
        access_log.log(record(1))
        access_log.log(record(2))
        assert access_log.drain(RECV_TIMEOUT)
        assert [port_of(line) for line in path.read_text().splitlines()[1:]] == [40001, 40002]
        access_log.log(record(3))  # logged before the signal, not flushed yet: still the old file
        rotated = tmp_path / "access.log.1"
        os.rename(path, rotated)  # logrotate: move, then signal
        access_log.reopen()
        access_log.log(record(4))
        access_log.log(record(5))
    finally:
        access_log.close()
    assert rotated.read_text().splitlines()[0] == "an older line"
    assert [port_of(line) for line in rotated.read_text().splitlines()[1:]] == [40001, 40002, 40003]
    assert [port_of(line) for line in path.read_text().splitlines()] == [40004, 40005]
    assert (path.stat().st_mode & 0o777) == 0o640 and access_log.dropped == 0


def test_file_created_at_start_and_shared_by_workers(tmp_path: Path) -> None:
    path = tmp_path / "shared.log"
    settings = AccessLogSettings(target=f"file:{path}")
    workers = [AccessLog(settings, worker=index) for index in range(2)]
    assert path.exists() and path.read_bytes() == b""
    for _ in range(3):
        for access_log in workers:
            for n in range(50):
                access_log.log(record(n))
            access_log.flush()
    for access_log in workers:
        access_log.close()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 300
    assert sorted(sum(1 for row in rows if row["worker"] == w) for w in (0, 1)) == [150, 150]


def test_file_that_cannot_be_opened_counts_drops_then_recovers(tmp_path: Path) -> None:
    directory = tmp_path / "not-yet"
    path = directory / "access.log"
    access_log = AccessLog(AccessLogSettings(target=f"file:{path}"))
    try:
        access_log.log(record(1))
        access_log.log(record(2))
        assert access_log.drain(RECV_TIMEOUT)
        assert access_log.dropped == 2
        directory.mkdir()
        access_log.log(record(3))
        assert access_log.drain(RECV_TIMEOUT)
    finally:
        access_log.close()
    assert [json.loads(line)["client_port"] for line in path.read_text().splitlines()] == [40003]
    assert access_log.dropped == 2


# -- stdout -------------------------------------------------------------------------------------------


def test_stdout_one_json_object_per_line(capfd: pytest.CaptureFixture[str]) -> None:
    access_log = AccessLog(AccessLogSettings(format="json", target="stdout"), worker=4)
    for n in range(3):
        access_log.log(record(n, user_agent="evil\n{\"forged\": true}"))
    access_log.close()
    lines = capfd.readouterr().out.splitlines()
    rows = [json.loads(line) for line in lines]
    assert [row["client_port"] for row in rows] == [40000, 40001, 40002]
    assert all(row["worker"] == 4 and row["user_agent"] == "evil\n{\"forged\": true}" for row in rows)


def _fill(fd: int) -> int:
    """Fill a pipe so that the next blocking write waits for a reader; bytes written."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    total = 0
    try:
        while True:
            total += os.write(fd, b"x" * 4096)
    except BlockingIOError:
        pass
    try:
        while True:
            total += os.write(fd, b"x")
    except BlockingIOError:
        pass
    fcntl.fcntl(fd, fcntl.F_SETFL, flags)
    return total


def test_stalled_pipe_never_blocks_and_drops_the_oldest() -> None:
    """stdout to a pipe nobody reads: sends return at once, the writer's queue stays
    bounded, the newest lines survive, and every line comes out whole."""
    read_fd, write_fd = os.pipe()
    filler = _fill(write_fd)
    sink = StreamSink(LogTarget("stdout"), max_pending=100, fd=write_fd)
    lines = [f"line {n:05d} " + "y" * 90 for n in range(5000)]
    for start in range(0, 5000, 10):
        sink.send(lines[start:start + 10])  # returns although the writer is stuck
    dropped = sink.dropped
    assert dropped >= 5000 - 200  # at most what the writer took plus one queue's worth are kept

    received = bytearray()

    def read_all() -> None:
        while chunk := os.read(read_fd, 65536):
            received.extend(chunk)

    reader = threading.Thread(target=read_all)
    reader.start()
    sink.close(RECV_TIMEOUT)
    os.close(write_fd)
    reader.join(RECV_TIMEOUT)
    os.close(read_fd)
    out = bytes(received[filler:]).decode().splitlines()
    assert len(out) + sink.dropped == 5000 and sink.dropped == dropped
    assert all(line in lines for line in out)
    assert out == sorted(out) and out[-1] == lines[-1]  # in order, the newest kept


def test_long_lines_to_a_pipe_are_cut_at_line_ends() -> None:
    read_fd, write_fd = os.pipe()
    sink = StreamSink(LogTarget("stdout"), max_pending=1000, fd=write_fd)
    lines = [str(n) * (n * 97 % (PIPE_BUF + 500) + 1) for n in range(1, 60)]
    received = bytearray()
    reader = threading.Thread(target=lambda: [received.extend(c) for c in iter(lambda: os.read(read_fd, 65536), b"")])
    reader.start()
    sink.send(lines)
    sink.close(RECV_TIMEOUT)
    os.close(write_fd)
    reader.join(RECV_TIMEOUT)
    os.close(read_fd)
    assert bytes(received).decode().splitlines() == lines


# -- syslog -------------------------------------------------------------------------------------------


@pytest.fixture
def udp_receiver() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(RECV_TIMEOUT)
    yield sock
    sock.close()


def unix_receiver(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(RECV_TIMEOUT)
    return sock


def parse_rfc5424(datagram: bytes) -> re.Match[str]:
    match = RFC5424.match(datagram.decode("ascii"))
    assert match is not None, datagram[:200]
    return match


def test_syslog_udp_rfc5424(udp_receiver: socket.socket) -> None:
    port = udp_receiver.getsockname()[1]
    settings = AccessLogSettings(format="text", target=f"syslog+udp://127.0.0.1:{port}", facility="local3", tag="lbtest")
    access_log = AccessLog(settings, worker=1)
    records = [record(n) for n in range(3)]
    for rec in records:
        access_log.log(rec)
    access_log.flush()
    for rec in records:
        message = parse_rfc5424(udp_receiver.recv(65536))
        assert int(message["pri"]) == 19 * 8 + 6 and message["version"] == "1"
        assert message["app"] == "lbtest" and message["procid"] == str(os.getpid()) and message["msgid"] == "access"
        assert message["hostname"] == (socket.gethostname() or "-")
        stamp = datetime.fromisoformat(message["timestamp"])
        assert stamp.tzinfo == timezone.utc and abs(stamp.timestamp() - rec.accepted) < 0.001
        assert message["msg"] == format_text(rec)
    # One datagram per line, cut at MAX_DATAGRAM.
    access_log.log(record(9, target="/" + "a" * 20000))
    access_log.flush()
    big = udp_receiver.recv(65536)
    assert len(big) == MAX_DATAGRAM and parse_rfc5424(big)["msg"].startswith("127.0.0.1:40009 ")
    access_log.close()
    assert access_log.dropped == 0


def test_syslog_udp_nobody_listening_never_raises(udp_receiver: socket.socket) -> None:
    port = udp_receiver.getsockname()[1]
    udp_receiver.close()  # the port is now closed: ICMP port unreachable
    access_log = AccessLog(AccessLogSettings(target=f"syslog+udp://127.0.0.1:{port}"))
    for _ in range(5):
        access_log.log(record())
        access_log.flush()
    access_log.close()
    assert access_log.dropped >= 1  # the refusals that came back were counted


def test_syslog_udp_nobody_listening_counts_a_batch_as_dropped(udp_receiver: socket.socket) -> None:
    # Each datagram to a closed port brings an ICMP port unreachable back, which the
    # kernel reports once, on the next send: inside a sendmmsg batch it stops the batch
    # without a reason. The sink takes that as a send error (drop, reconnect once per
    # batch, then drop the rest), so most of each batch is counted, as it was when
    # every line had its own send.
    port = udp_receiver.getsockname()[1]
    udp_receiver.close()
    access_log = AccessLog(AccessLogSettings(target=f"syslog+udp://127.0.0.1:{port}"))
    for batch in range(5):
        for n in range(20):
            access_log.log(record(n))
        access_log.flush()
    access_log.close()
    assert access_log.dropped >= 50


# -- syslog over TCP -------------------------------------------------------------------------


@pytest.fixture
def tcp_server() -> Iterator[socket.socket]:
    """A bound TCP socket, not yet listening: connections to it are refused until the
    test calls ``listen()``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(RECV_TIMEOUT)
    yield sock
    sock.close()


def read_frames(conn: socket.socket, count: int) -> list[bytes]:
    """``count`` octet-counted messages (RFC 6587: ``LEN SP MSG``) from ``conn``."""
    data, frames = b"", []
    while len(frames) < count:
        space = data.find(b" ")
        if space > 0 and len(data) >= space + 1 + int(data[:space]):
            end = space + 1 + int(data[:space])
            frames.append(data[space + 1:end])
            data = data[end:]
            continue
        chunk = conn.recv(65536)
        assert chunk, f"connection closed after {len(frames)} of {count} messages"
        data += chunk
    assert not data, "more bytes than the messages expected"
    return frames


def test_syslog_tcp_octet_counted_rfc5424(tcp_server: socket.socket) -> None:
    tcp_server.listen()
    port = tcp_server.getsockname()[1]
    access_log = AccessLog(AccessLogSettings(format="text", target=f"syslog+tcp://127.0.0.1:{port}",
                                             facility="local3", tag="lbtest"), worker=1)
    records = [record(n) for n in range(3)] + [record(9, target="/" + "a" * 20000)]
    for rec in records:
        access_log.log(rec)
    assert access_log.drain(RECV_TIMEOUT)
    conn, _ = tcp_server.accept()
    with conn:
        conn.settimeout(RECV_TIMEOUT)
        frames = read_frames(conn, len(records))
        for rec, frame in zip(records[:3], frames):
            message = parse_rfc5424(frame)
            assert int(message["pri"]) == 19 * 8 + 6 and message["app"] == "lbtest" and message["msgid"] == "access"
            assert message["msg"] == format_text(rec)
        assert len(frames[3]) == MAX_DATAGRAM  # a long line is cut, as for a datagram
        access_log.close()
        assert conn.recv(1) == b""  # closed with the log
    assert access_log.dropped == 0


def test_syslog_tcp_refused_counts_drops_then_connects(tcp_server: socket.socket, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accesslog_sinks, "RECONNECT_DELAY", 0.0)  # retry with the next batch
    port = tcp_server.getsockname()[1]
    access_log = AccessLog(AccessLogSettings(format="text", target=f"syslog+tcp://127.0.0.1:{port}"))
    for n in range(4):
        access_log.log(record(n))
    assert access_log.drain(RECV_TIMEOUT)
    assert access_log.dropped == 4  # refused: nothing listens yet
    tcp_server.listen()
    access_log.log(record(7))
    assert access_log.drain(RECV_TIMEOUT)
    conn, _ = tcp_server.accept()
    with conn:
        conn.settimeout(RECV_TIMEOUT)
        assert port_of(parse_rfc5424(read_frames(conn, 1)[0])["msg"]) == 40007
    access_log.close()
    assert access_log.dropped == 4


def test_syslog_tcp_server_that_closed_gets_a_new_connection(tcp_server: socket.socket) -> None:
    # A syslog server restarted: the sink sees the connection closed before writing,
    # and the next batch goes whole over a new one (not into a dead socket).
    tcp_server.listen()
    port = tcp_server.getsockname()[1]
    access_log = AccessLog(AccessLogSettings(format="json", target=f"syslog+tcp://127.0.0.1:{port}"))
    access_log.log(record(1))
    assert access_log.drain(RECV_TIMEOUT)
    first, _ = tcp_server.accept()
    first.settimeout(RECV_TIMEOUT)
    assert len(read_frames(first, 1)) == 1
    first.close()
    sink = access_log._sink
    assert isinstance(sink, accesslog_sinks.TcpSyslogSink) and sink._sock is not None
    readable, _, _ = select.select([sink._sock], [], [], RECV_TIMEOUT)  # the FIN has arrived
    assert readable
    for n in (2, 3):
        access_log.log(record(n))
    assert access_log.drain(RECV_TIMEOUT)
    second, _ = tcp_server.accept()
    with second:
        second.settimeout(RECV_TIMEOUT)
        messages = [json.loads(parse_rfc5424(frame)["msg"]) for frame in read_frames(second, 2)]
    assert [m["client_port"] for m in messages] == [40002, 40003]
    access_log.close()
    assert access_log.dropped == 0


def test_unsent_frames_counts_the_messages_a_failed_write_did_not_finish() -> None:
    data = b"3 abc5 hello2 hi"
    assert [unsent_frames(data, sent) for sent in (0, 5, 6, 12, 13, len(data))] == [3, 2, 2, 1, 1, 0]


def test_syslog_unix_json_and_reconnect(tmp_path: Path) -> None:
    path = tmp_path / "log.sock"
    receiver = unix_receiver(path)
    access_log = AccessLog(AccessLogSettings(format="json", target=f"syslog+unix://{path}", facility="daemon"))
    try:
        access_log.log(record(1))
        access_log.flush()
        message = parse_rfc5424(receiver.recv(65536))
        assert int(message["pri"]) == 3 * 8 + 6 and message["app"] == "lbcore"
        assert json.loads(message["msg"]) == json.loads(format_json(record(1, accepted=json_time(message["msg"]))))

        # The syslog daemon goes away: sends fail, are counted, never raise.
        receiver.close()
        path.unlink()
        access_log.log(record(2))
        access_log.log(record(3))
        access_log.flush()
        assert access_log.dropped == 2

        # It comes back on the same path: the next flush reconnects.
        receiver = unix_receiver(path)
        access_log.log(record(4))
        access_log.flush()
        assert json.loads(parse_rfc5424(receiver.recv(65536))["msg"])["client_port"] == 40004
        assert access_log.dropped == 2
    finally:
        access_log.close()
        receiver.close()


def json_time(msg: str) -> float:
    return datetime.fromisoformat(json.loads(msg)["timestamp"]).timestamp()


def test_syslog_unix_receiver_behind_drops_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "slow.sock"
    receiver = unix_receiver(path)  # never reads until the end
    access_log = AccessLog(AccessLogSettings(format="text", target=f"syslog+unix://{path}"), max_pending=5000)
    try:
        for n in range(2000):
            access_log.log(record(n, target="/" + "p" * 1000))
        access_log.flush()
        assert access_log.dropped > 0
        received = 0
        receiver.setblocking(False)
        try:
            while receiver.recv(65536):
                received += 1
        except BlockingIOError:
            pass
        assert received + access_log.dropped == 2000
    finally:
        access_log.close()
        receiver.close()


# -- on a running loop --------------------------------------------------------------------------------


@pytest.mark.parametrize("loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"])
def test_timer_and_batch_flush_on_a_real_loop(tmp_path: Path, loop_factory: Any) -> None:
    path = tmp_path / "log.sock"
    receiver = unix_receiver(path)
    receiver.setblocking(False)
    spec = parse_spec({
        "defaults": {"access_log": {"target": f"syslog+unix://{path}", "format": "text"}},
        "listeners": [{"name": "web", "bind": "127.0.0.1:8080", "default_pool": "p"}],
        "pools": [{"name": "p"}],
    })
    loop = loop_factory()
    logs = AccessLogs(worker=0, loop=loop, batch=3, interval=0.01)
    try:
        logs.apply(spec)
        access_log = logs.for_listener("web")
        assert access_log is not None

        async def receive() -> bytes:
            return await asyncio.wait_for(loop.sock_recv(receiver, 65536), RECV_TIMEOUT)

        # The timer flushes a lone record.
        access_log.log(record(1))
        assert port_of(parse_rfc5424(loop.run_until_complete(receive()))["msg"]) == 40001
        # A full batch is flushed on the next loop iteration, before any timer.
        logs.close()
        logs = AccessLogs(worker=0, loop=loop, batch=3, interval=3600)
        logs.apply(spec)
        access_log = logs.for_listener("web")
        assert access_log is not None
        for n in (2, 3, 4):
            access_log.log(record(n))
        with pytest.raises(BlockingIOError):
            receiver.recv(65536)  # nothing was sent from the request path
        loop.run_until_complete(asyncio.sleep(0))
        assert [port_of(parse_rfc5424(receiver.recv(65536))["msg"]) for _ in range(3)] == [40002, 40003, 40004]
    finally:
        logs.close()
        loop.close()
        receiver.close()
