"""Socket calls the engine makes often: the pure twin of ``_sockio`` (the reference).

``send_datagrams(sock, datagrams, start=0)`` sends ``datagrams[start:]`` on a connected
datagram socket, in order, and stops at the first one the kernel refuses: it returns how
many went out, or raises that datagram's ``OSError`` when it was the first. This is
the contract of Linux's ``sendmmsg(2)``, which the compiled twin calls with up to
``BATCH`` datagrams per system call; here it is one ``send`` per datagram.

The kernel says why a datagram was refused only when it is the first of a call:
``sendmmsg`` drops the reason of a later one, and an error reported once (a refused
port's ICMP) is gone by the next call. So a short count means "refused, cause unknown";
the sink counts that datagram as dropped and reconnects, as for a send error.

The socket must be non-blocking (``ValueError`` otherwise: the compiled twin cannot honour
a timeout). Every item must be ``bytes``; anything else raises ``TypeError`` before
anything is sent.

``encode_datagrams(messages, limit)`` makes the datagrams of a batch of text lines:
each encoded as ASCII, any other character escaped (``backslashreplace``), cut to
``limit`` bytes (the syslog sink's message size). The compiled twin copies an ASCII ``str``'s
bytes directly; the sink called ``str.encode`` per line from an interpreted loop.

``cork(sock)`` sets ``TCP_CORK`` on a TCP socket (Linux): the kernel holds partial
segments until the socket is closed or uncorked. ``sock`` is anything with the socket's
``fileno()``: a ``socket.socket``, what a uvloop transport's ``get_extra_info("socket")``
returns, an lbcore ``streams.Stream``; an ``OSError`` says why it could not (not TCP,
closed). Both twins set it on the descriptor: uvloop's socket object looks its own
address up (``getsockname``) first, every call.

``send_now(sock, data)`` writes what the kernel takes of ``data`` (bytes) at once, on the
socket's descriptor: it returns that count, 0 when the kernel takes nothing now (its
buffer is full) or ``data`` is not bytes, and -1 on any error or when the socket has no
descriptor (closed). It never raises: the caller hands what was not sent to its
transport, which reports an error its own way. (A client connection writes this way
while its transport has nothing buffered: uvloop's write costs ~2k instructions.)
``DescriptorWriter().send_now(fd, data)`` is the same on a descriptor the caller took
once, ``sock.fileno()``: the compiled engine's connections write through the compiled
twin's, a C method, without a ``fileno()`` call per write.

``peer_name(sock)`` is ``sock.getpeername()`` (a connection's client address: a
``(host, port)`` tuple for IPv4, what the socket module gives for any other family),
or None when the socket has no peer any more (reset, closed: ``OSError``). The
compiled twin calls ``getpeername`` on the descriptor and writes an IPv4 address out
itself: a uvloop transport's ``get_extra_info("peername")`` formats its cached address
with ``snprintf`` on every call, ~2.5k instructions a connection.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Any, Sequence

__all__ = ["IMPLEMENTATION", "BATCH", "DescriptorWriter", "cork", "encode_datagrams", "peer_name", "send_datagrams",
           "send_now"]

IMPLEMENTATION = "pure"
BATCH = 1  # datagrams per system call


def send_datagrams(sock: socket.socket, datagrams: Sequence[bytes], start: int = 0) -> int:
    """Send ``datagrams[start:]`` in order until one is refused; return how many were sent."""
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    if sock.gettimeout() != 0.0:
        raise ValueError("send_datagrams needs a non-blocking socket")
    datagrams = list(datagrams)
    for index in range(start, len(datagrams)):
        data = datagrams[index]
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


def encode_datagrams(messages: Sequence[str], limit: int) -> list[bytes]:
    """Each message as ASCII (``backslashreplace``), at most ``limit`` bytes."""
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    return [message.encode("ascii", "backslashreplace")[:limit] for message in messages]


def cork(sock: Any) -> None:
    """Set TCP_CORK on ``sock.fileno()`` (a socket, a uvloop socket object, a stream)."""
    _cork_fd(sock.fileno())


def _cork_fd(fd: int) -> None:
    if fd < 0:
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))  # what setsockopt on a closed socket says
    view = socket.socket(fileno=fd)
    try:
        view.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
    finally:
        view.detach()  # the descriptor stays its owner's


def peer_name(sock: socket.socket) -> object:
    """``sock.getpeername()``, or None when the socket has no peer (closed, reset)."""
    try:
        return sock.getpeername()
    except OSError:
        return None


def send_now(sock: socket.socket, data: bytes) -> int:
    """What the kernel takes of ``data`` now: its count, 0 if nothing, -1 on an error."""
    if type(data) is not bytes:
        return 0
    return _send_now(sock.fileno(), data)


class DescriptorWriter:
    """``send_now`` on a descriptor its caller took once (``sock.fileno()``): the
    compiled twin's is a C method the compiled engine calls directly."""

    __slots__ = ()

    def send_now(self, fd: int, data: bytes) -> int:
        """``send_now`` of ``data`` on ``fd`` (-1: no descriptor)."""
        if type(data) is not bytes:
            return 0
        return _send_now(fd, data)

    def cork(self, fd: int) -> None:
        """``cork`` of the socket whose descriptor is ``fd`` (-1: closed, EBADF)."""
        _cork_fd(fd)


def _send_now(fd: int, data: bytes) -> int:
    if fd < 0:
        return -1
    try:
        return os.write(fd, data)  # the descriptor is non-blocking; SIGPIPE is ignored by Python
    except (BlockingIOError, InterruptedError):
        return 0
    except OSError:
        return -1
