"""Datagrams out in order: the pure twin of ``_sockio`` (the reference).

``send_datagrams(sock, datagrams, start=0)`` sends ``datagrams[start:]`` on a connected
datagram socket, in order, and stops at the first one the kernel refuses: it returns how
many went out (at least one), or raises that datagram's ``OSError`` when it was the
first. This is the contract of Linux's ``sendmmsg(2)``, which the compiled twin calls
with up to ``BATCH`` datagrams per system call; here it is one ``send`` per datagram.
The caller learns which datagram failed, and why, by calling again from it: the access
log's syslog sink drops that one, counts it, and goes on with the next.

Every item must be ``bytes``; anything else raises ``TypeError`` before anything is sent.
"""

from __future__ import annotations

import socket
from typing import Sequence

__all__ = ["IMPLEMENTATION", "BATCH", "send_datagrams"]

IMPLEMENTATION = "pure"
BATCH = 1  # datagrams per system call


def send_datagrams(sock: socket.socket, datagrams: Sequence[bytes], start: int = 0) -> int:
    """Send ``datagrams[start:]`` in order until one is refused; return how many were sent."""
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    for data in datagrams[start:]:
        if type(data) is not bytes:
            raise TypeError(f"a datagram must be bytes, not {type(data).__name__}")
    send = sock.send
    sent = 0
    for index in range(start, len(datagrams)):
        try:
            send(datagrams[index])
        except OSError:
            if sent == 0:
                raise
            return sent
        sent += 1
    return sent
