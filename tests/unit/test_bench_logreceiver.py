"""The bench's TCP log receiver: it takes the TCP port of its UDP socket's number, or
refuses (the harness then draws another pair), and counts every byte sent to it,
including what arrived just before it was closed."""

from __future__ import annotations

import socket

import pytest

from bench.run import LogReceiver


def test_a_tcp_port_already_taken_is_refused() -> None:
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        udp.bind(taken.getsockname())
        with pytest.raises(OSError):
            LogReceiver(udp)
    finally:
        udp.close()
        taken.close()


def test_bytes_sent_before_close_are_counted() -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    receiver = LogReceiver(udp)
    for payload in (b"5 hello", b"3 abc2 hi"):
        with socket.create_connection(udp.getsockname(), timeout=5) as client:
            client.sendall(payload)
    receiver.close()
    assert receiver.received == len(b"5 hello") + len(b"3 abc2 hi")
