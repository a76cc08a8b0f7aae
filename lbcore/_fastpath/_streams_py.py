"""A listener's accept path and its connections' transports: the pure twin of ``_streams``.

``serve(loop, sock, protocol_factory)`` accepts connections on ``sock`` (a listening
socket, which the returned ``Acceptor`` owns from then on) and gives each one a
``Stream``: an ``asyncio.Transport`` for the protocol ``protocol_factory()`` makes,
with the asyncio semantics the engine relies on:

- ``connection_made(stream)`` right after the accept; ``data_received(bytes)`` per read;
  ``eof_received()`` on the peer's FIN (a false answer closes the stream);
  ``connection_lost(exc)`` once, always from the loop (never inside the call that
  closed the stream), ``exc`` None after ``close()``/``abort()`` or the exception
  of a failed read or write.
- ``write(data)`` buffers ``data``; at the end of the loop's batch of events (here: of
  its callbacks, ``call_soon``) it is sent with the batch's other writes, and what the
  kernel does not take is sent as the socket drains (the compiled twin's docstring says
  why); ``pause_writing()``/``resume_writing()`` when the buffer crosses
  the high and low marks (``set_write_buffer_limits``, asyncio's defaults: 64 KiB and
  a quarter of it). Writes after the connection is lost are dropped; writes after
  ``write_eof()`` raise ``RuntimeError``.
- ``close()`` stops reading, sends what is buffered, then closes; ``abort()`` closes
  at once and drops the buffer. ``write_eof()`` shuts the socket down for writing
  once the buffer is sent. ``pause_reading()``/``resume_reading()``; a stream never
  reads again after the peer's EOF.
- ``get_extra_info``: ``peername`` (from the accept), ``sockname``, ``socket`` (a
  ``StreamSocket`` view of the descriptor; closing it is the stream's business).
- ``peer_v4``/``peer_port``: an IPv4 peer's address as a number (as
  ``int(ipaddress.IPv4Address)``) and its port; -1 and 0 for any other peer. The
  engine keys its per-client cache by the number; the compiled twin formats the
  address as text only when ``peername`` is asked for.
- ``fileno()``: the descriptor, -1 once closed (what ``sockio.cork`` and
  ``sockio.peer_name`` call).

``connect(loop, protocol_factory, host, port)`` is the other way to a stream: a
connection to an IP address (a member's), as ``loop.create_connection`` makes it.

The ``Acceptor`` accepts up to ``ACCEPT_BATCH`` connections per wake-up (the rest on
the next: several workers share a listening socket), sets ``TCP_NODELAY`` on TCP
connections (on the listening socket, which Linux's accepted sockets inherit: no system
call per connection; on each accepted one only if the listening socket refused), and
on running out of descriptors or memory (``EMFILE``, ``ENFILE``, ``ENOBUFS``,
``ENOMEM``) logs it and stops accepting for ``ACCEPT_RETRY_DELAY`` seconds,
as asyncio does. ``close()`` stops accepting and closes the listening socket; the
connections accepted before carry on.

Why this exists: a uvloop server makes, per connection, a transport, a pseudo-socket,
handles for ``connection_made`` and ``connection_lost``, and formats the peer's address
(~10k instructions a connection under callgrind). The compiled twin (``_streams.pyx``)
does the same work on one epoll set of its own, read by the loop as one descriptor.
This twin runs on the loop's ``add_reader``/``add_writer``: the reference for the
behaviour, not for the cost.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
import weakref
from typing import Any, Callable

from lbcore._fastpath import clock
from lbcore._fastpath._streams_common import ACCEPT_BATCH, ACCEPT_RETRY_DELAY, READ_SIZE, RESOURCE_ERRNOS, \
    default_limits, ip_family, ipv4_number, nodelay_each

__all__ = ["IMPLEMENTATION", "ACCEPT_BATCH", "Acceptor", "Stream", "StreamSocket", "connect", "ip_family", "serve"]

IMPLEMENTATION = "pure"
HOLD_LIMIT = 0.0001  # seconds a write may wait for the batch's end (the compiled twin's HOLD_LIMIT_NS)
_MSG_MORE = getattr(socket, "MSG_MORE", 0)  # Linux; elsewhere each send goes as it is


class _Held:
    """One loop's streams written to during its current batch of callbacks: sent
    together when the batch ends (one ``call_soon``), or once the oldest has waited
    ``HOLD_LIMIT``, checked at the next read or write (an expensive callback delays
    no one's answer)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.streams: list[Stream] = []
        self.since = 0.0

    def add(self, stream: "Stream") -> None:
        if not self.streams:
            self.since = time.monotonic()
            self.loop.call_soon(self.send)
        self.streams.append(stream)

    def overdue(self) -> bool:
        return bool(self.streams) and time.monotonic() - self.since > HOLD_LIMIT

    def send(self) -> None:
        streams, self.streams = self.streams, []
        for stream in streams:
            stream._send_held()


_held: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Held]" = weakref.WeakKeyDictionary()


def _held_of(loop: asyncio.AbstractEventLoop) -> _Held:
    held = _held.get(loop)
    if held is None:
        held = _held[loop] = _Held(loop)
    return held

log = logging.getLogger("lbcore.streams")


class Acceptor:
    """Accepts on one listening socket (owned) until ``close()``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, protocol_factory: Callable[[], Any]) -> None:
        self.loop = loop
        self.sock = sock
        self.protocol_factory = protocol_factory
        self.fd = sock.fileno()
        self.serving = True
        self.retry: asyncio.TimerHandle | None = None
        self.nodelay_each = nodelay_each(sock)
        sock.setblocking(False)
        loop.add_reader(self.fd, self._accept)

    def is_serving(self) -> bool:
        return self.serving

    def close(self) -> None:
        """Stop accepting and close the listening socket (accepted connections go on)."""
        if not self.serving:
            return
        self.serving = False
        if self.retry is not None:
            self.retry.cancel()
            self.retry = None
        else:
            self.loop.remove_reader(self.fd)
        self.sock.close()

    def _resume(self) -> None:
        self.retry = None
        if self.serving:
            self.loop.add_reader(self.fd, self._accept)

    def _accept(self) -> None:
        clock.hold()
        try:
            self._accept_batch()
        finally:
            clock.release()

    def _accept_batch(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, peer = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in RESOURCE_ERRNOS:
                    log.error("listener %s: cannot accept (%s): pausing %.0f s", _name(self.sock), exc,
                              ACCEPT_RETRY_DELAY)
                    self.loop.remove_reader(self.fd)
                    self.retry = self.loop.call_later(ACCEPT_RETRY_DELAY, self._resume)
                    return
                # ECONNABORTED and the like: that connection is gone, the next may not be.
                log.debug("listener %s: accept: %s", _name(self.sock), exc)
                continue
            conn.setblocking(False)
            if self.nodelay_each:
                try:
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                except OSError:
                    pass
            _start(self.loop, conn, peer, self.protocol_factory)


def _name(sock: socket.socket) -> object:
    try:
        return sock.getsockname()
    except OSError:
        return "?"


def _start(loop: asyncio.AbstractEventLoop, conn: socket.socket, peer: object, protocol_factory: Callable[[], Any]) -> None:
    try:
        protocol = protocol_factory()
    except Exception:
        log.exception("protocol factory failed; connection from %s closed", peer)
        conn.close()
        return
    stream = Stream(loop, conn, peer, protocol)
    try:
        protocol.connection_made(stream)
    except Exception as exc:
        log.exception("connection_made failed; connection from %s aborted", peer)
        stream._force_close(exc)


class StreamSocket:
    """A stream's socket as ``get_extra_info("socket")`` gives it: the socket calls a
    protocol may make on the descriptor (options, addresses), never its ownership:
    closing, reading and writing are the stream's (as uvloop's pseudo-socket)."""

    __slots__ = ("_stream", "family", "type", "proto")

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.family = stream.family
        self.type = socket.SOCK_STREAM
        self.proto = 0

    def fileno(self) -> int:
        return self._stream.fileno()

    def _call(self, name: str, *args: Any) -> Any:
        fd = self._stream.fileno()
        if fd < 0:
            raise OSError(errno.EBADF, "the stream is closed")
        sock = socket.socket(self.family, self.type, self.proto, fileno=fd)
        try:
            return getattr(sock, name)(*args)
        finally:
            sock.detach()  # the descriptor stays the stream's

    def getsockopt(self, *args: Any) -> Any:
        return self._call("getsockopt", *args)

    def setsockopt(self, *args: Any) -> None:
        self._call("setsockopt", *args)

    def getpeername(self) -> Any:
        return self._call("getpeername")

    def getsockname(self) -> Any:
        return self._call("getsockname")

    def __repr__(self) -> str:
        return f"<StreamSocket fd={self._stream.fileno()} family={self.family!r}>"


def serve(loop: asyncio.AbstractEventLoop, sock: socket.socket, protocol_factory: Callable[[], Any]) -> Acceptor:
    """Accept connections on ``sock`` (listening; owned by the Acceptor from now on)."""
    return Acceptor(loop, sock, protocol_factory)


async def connect(loop: asyncio.AbstractEventLoop, protocol_factory: Callable[[], Any], host: str,
                  port: int) -> tuple[Stream, Any]:
    """Connect to ``host`` (an IPv4 or IPv6 address, ``ip_family``) and ``port``; (stream,
    protocol) once ``connection_made`` ran, as ``loop.create_connection`` gives them. The
    connect's ``OSError`` is raised as it comes; cancelled, the socket is closed."""
    family = ip_family(host)
    if not family:
        raise ValueError(f"not an IP address: {host!r}")
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await loop.sock_connect(sock, (host, port))
        peer = sock.getpeername()
    except BaseException:
        sock.close()
        raise
    protocol = protocol_factory()
    stream = Stream(loop, sock, peer, protocol)
    try:
        protocol.connection_made(stream)
    except Exception as exc:
        stream._force_close(exc)
        raise
    return stream, protocol


class Stream:
    """One accepted connection's transport (see the module's docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, peer: object, protocol: Any) -> None:
        self.loop = loop
        self.sock: socket.socket | None = sock
        self.fd = sock.fileno()
        self.family = sock.family
        self.peername = peer
        # An IPv4 peer's address as a number (-1: another family), and its port: what the
        # engine keys its per-client cache by (the compiled twin makes no text for it).
        self.peer_v4 = ipv4_number(self.family, peer)
        self.peer_port = peer[1] if self.peer_v4 >= 0 else 0
        self.protocol = protocol
        self.buffer = bytearray()
        self.high, self.low = default_limits(None, None)
        self.protocol_paused = False
        self.closing = False  # close()/abort() called, or the connection failed
        self.lost = False  # the descriptor is closed; connection_lost is due or done
        self.paused = False  # pause_reading()
        self.read_eof = False  # the peer's FIN was read
        self.eof = False  # write_eof() called
        self.writing = False  # a writer is registered (the buffer waits for the socket)
        self.held = False  # the buffer waits for the end of the loop's batch (_send_held)
        self.reading = True
        self.view: StreamSocket | None = None
        loop.add_reader(self.fd, self._read_ready)

    # -- asyncio.BaseTransport -----------------------------------------------------
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self.peername
        if name == "sockname":
            if self.lost:
                return default
            try:
                return self.sock.getsockname()  # type: ignore[union-attr]
            except OSError:
                return default
        if name == "socket":
            if self.view is None:
                self.view = StreamSocket(self)
            return self.view
        return default

    def fileno(self) -> int:
        return -1 if self.lost else self.fd

    def is_closing(self) -> bool:
        return self.closing

    def get_protocol(self) -> Any:
        return self.protocol

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        self._stop_reading()
        if not self.buffer:
            self._finish(None)

    def abort(self) -> None:
        self._force_close(None)

    # -- reading ------------------------------------------------------------------
    def is_reading(self) -> bool:
        return self.reading

    def pause_reading(self) -> None:
        if self.closing or self.paused:
            return
        self.paused = True
        self._stop_reading()

    def resume_reading(self) -> None:
        if self.closing or not self.paused:
            return
        self.paused = False
        if not self.read_eof and not self.reading:
            self.reading = True
            self.loop.add_reader(self.fd, self._read_ready)

    def _stop_reading(self) -> None:
        if self.reading:
            self.reading = False
            if not self.lost:
                self.loop.remove_reader(self.fd)

    def _read_ready(self) -> None:
        # One clock read for what this wake-up does (_clock_py's module doc), as the
        # compiled poller holds it for each epoll batch.
        held = _held.get(self.loop)
        if held is not None and held.overdue():  # what an earlier callback held: out now
            held.send()
        clock.hold()
        try:
            self._read()
        finally:
            clock.release()

    def _read(self) -> None:
        if not self.reading:
            return
        try:
            data = self.sock.recv(READ_SIZE)  # type: ignore[union-attr]
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._force_close(exc)
            return
        if data:
            try:
                self.protocol.data_received(data)
            except Exception as exc:
                log.exception("data_received failed; connection from %s aborted", self.peername)
                self._force_close(exc)
            return
        self.read_eof = True
        self._stop_reading()
        try:
            keep_open = self.protocol.eof_received()
        except Exception as exc:
            log.exception("eof_received failed; connection from %s aborted", self.peername)
            self._force_close(exc)
            return
        if not keep_open:
            self.close()

    # -- writing ------------------------------------------------------------------
    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, not {type(data).__name__!r}")
        if self.eof:
            raise RuntimeError("Cannot call write() after write_eof()")
        if self.lost or not data:
            return
        held = _held_of(self.loop)
        if not self.writing and not self.held:
            # Held to the end of the loop's batch of callbacks, then sent with the others'.
            self.held = True
            held.add(self)
        self.buffer += data
        self._maybe_pause_protocol()
        if held.overdue():
            held.send()

    def _send_held(self) -> None:
        """What was written during the batch, sent (as _write_ready would once the
        socket can take it); the rest waits for the socket as any other."""
        if not self.held:
            return
        self.held = False
        if self.lost or self.writing:
            return
        self._write_ready()
        if self.buffer and not self.lost:
            self._start_writing()

    def writelines(self, list_of_data) -> None:  # noqa: ANN001 - asyncio's signature
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self.closing or self.eof:
            return
        self.eof = True
        if not self.buffer:
            self._shutdown_write()

    def get_write_buffer_size(self) -> int:
        return len(self.buffer)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self.low, self.high

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.high, self.low = default_limits(high, low)
        self._maybe_pause_protocol()

    def _start_writing(self) -> None:
        if not self.writing:
            self.writing = True
            self.loop.add_writer(self.fd, self._write_ready)

    def _stop_writing(self) -> None:
        if self.writing:
            self.writing = False
            if not self.lost:
                self.loop.remove_writer(self.fd)

    def _write_ready(self) -> None:
        if not self.buffer or self.lost:
            self._stop_writing()
            return
        try:
            # After write_eof, the FIN follows the last byte: MSG_MORE keeps that tail
            # for it, so they leave in one segment (as the compiled twin's send_now).
            more = _MSG_MORE if self.eof and not self.closing else 0
            sent = self.sock.send(self.buffer, more)  # type: ignore[union-attr]
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._force_close(exc)
            return
        del self.buffer[:sent]
        self._maybe_resume_protocol()
        if self.buffer:
            return
        self._stop_writing()
        if self.closing:
            self._finish(None)
        elif self.eof:
            self._shutdown_write()

    def _shutdown_write(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)  # type: ignore[union-attr]
        except OSError as exc:
            self._force_close(exc)

    def _maybe_pause_protocol(self) -> None:
        if not self.protocol_paused and len(self.buffer) > self.high:
            self.protocol_paused = True
            try:
                self.protocol.pause_writing()
            except Exception:
                log.exception("pause_writing failed")

    def _maybe_resume_protocol(self) -> None:
        if self.protocol_paused and len(self.buffer) <= self.low:
            self.protocol_paused = False
            try:
                self.protocol.resume_writing()
            except Exception:
                log.exception("resume_writing failed")

    # -- the end ------------------------------------------------------------------
    def _force_close(self, exc: BaseException | None) -> None:
        if self.lost:
            return
        self.closing = True
        self.buffer.clear()
        self._finish(exc)

    def _finish(self, exc: BaseException | None) -> None:
        """Close the descriptor now and call connection_lost from the loop, once."""
        if self.lost:
            return
        self._stop_reading()
        self._stop_writing()
        self.lost = True
        self.sock.close()  # type: ignore[union-attr]
        self.sock = None
        self.loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        protocol, self.protocol = self.protocol, None
        try:
            protocol.connection_lost(exc)
        except Exception:
            log.exception("connection_lost failed")

