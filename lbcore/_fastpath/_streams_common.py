"""What both twins of the streams module share: their limits, and helpers in Python."""

from __future__ import annotations

import errno
import socket

ACCEPT_BATCH = 32  # connections accepted per wake-up; the next wake-up takes the rest
ACCEPT_RETRY_DELAY = 1.0  # seconds without accepting after running out of descriptors (asyncio's)
READ_SIZE = 256 * 1024  # bytes per read (uvloop's)
HIGH_WATER = 64 * 1024  # asyncio's default write buffer limits
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def nodelay_each(sock: socket.socket) -> bool:
    """Set ``TCP_NODELAY`` on a listening TCP socket, which the sockets it accepts then
    have already (Linux copies it to them); true if each accepted one must still get it:
    the listening socket refused it. False for a socket that is not TCP."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        return True
    return False


def default_limits(high: int | None, low: int | None) -> tuple[int, int]:
    """(high, low) as asyncio's transports take them: either may be left out."""
    if high is None:
        high = HIGH_WATER if low is None else 4 * low
    if low is None:
        low = high // 4
    if not high >= low >= 0:
        raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
    return high, low


def ip_family(host: str) -> int:
    """``AF_INET`` or ``AF_INET6`` when ``host`` is an address of that family, else 0 (a name:
    ``connect`` takes addresses only, the loop's ``create_connection`` resolves names)."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            return family
        except OSError:
            pass
    return 0


def ipv4_number(family: int, peer: object) -> int:
    """A peer's IPv4 address as a number (``int(ipaddress.IPv4Address)``), from its
    ``getpeername()`` tuple; -1 when it is not an IPv4 peer (``Stream.peer_v4``)."""
    if family != socket.AF_INET or not isinstance(peer, tuple) or len(peer) != 2:
        return -1
    try:
        return int.from_bytes(socket.inet_aton(peer[0]), "big")
    except (OSError, TypeError):
        return -1
