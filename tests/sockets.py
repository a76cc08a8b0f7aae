"""Socket helpers the tests share."""

from __future__ import annotations

import socket


def read_available(sock: socket.socket) -> bytes:
    """What a non-blocking socket holds to read now (its peer must not have closed)."""
    got = b""
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except BlockingIOError:
            return got
        assert chunk
        got += chunk
