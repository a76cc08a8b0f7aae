"""Where access-log batches go: a stream (stdout, a file, syslog over TCP) or syslog datagrams.

Theory of operation. ``send(messages)`` is called on the event loop with one flushed
batch and never blocks it:

- ``StreamSink`` (stdout, ``file:``) hands the batch, joined into one bytes object,
  to its own writer thread, which does the blocking ``write``. A full disk, a slow
  NFS mount or a stdout pipe nobody reads stalls that thread, not the loop. What
  waits for the thread is bounded (``max_pending`` records): past it the oldest
  batches are dropped and counted. ``reopen`` is queued between batches, so lines
  flushed before a SIGUSR1 land in the file that was renamed and later ones in the
  new one. A file is opened with O_APPEND, so workers appending to one file never
  overwrite each other; on a pipe or socket (stdout under a supervisor or journald)
  each write is at most PIPE_BUF bytes cut at a line end, which POSIX makes atomic
  for pipes, so lines of several workers never interleave.
- ``TcpSyslogSink`` (``syslog+tcp``) is a stream sink whose thread also connects:
  each message framed by its length (RFC 6587 octet counting: ``LEN SP MSG``), the
  batches that waited written in one go over one connection per worker. A datagram
  per line costs the kernel a packet per request; this costs it a fraction of one.
  The connection is made by the thread (never on the loop), remade after an error
  or when the server closed it, at most once a second while it is refused; a write
  that stalls for SEND_TIMEOUT drops the connection. Messages not handed to the
  kernel when a connection fails are counted dropped (those it had taken are as
  lost as a datagram would be: TCP syslog does not acknowledge).
- ``DatagramSink`` (``syslog+udp``, ``syslog+unix``) sends one datagram per message
  from a non-blocking socket, a batch's datagrams in as few system calls as the kernel
  takes them (``sendmmsg``, ``lbcore._fastpath.sockio``): a send that would block or
  fails drops that message (counted), and the socket is reconnected on the next
  message (a restarted syslog daemon, a receiver that came up late).

Errors never reach the engine: they are counted in ``dropped`` and logged once per
run of failures on the ``lbcore.accesslog`` logger.
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import select
import socket
import stat
import threading
import time
from typing import Sequence

from lbcore._fastpath.sockio import encode_datagrams, send_datagrams
from lbcore.spec import LogTarget

__all__ = ["DatagramSink", "MAX_DATAGRAM", "PIPE_BUF", "StreamSink", "TcpSyslogSink", "make_sink"]

log = logging.getLogger("lbcore.accesslog")

MAX_DATAGRAM = 8192  # bytes of one syslog message; longer ones are cut (rsyslog's default maxMessageSize)
PIPE_BUF = getattr(select, "PIPE_BUF", 4096)  # the largest write POSIX keeps whole on a pipe
FILE_MODE = 0o640  # a new log file: owner writes, group (adm) reads
_REOPEN = object()  # queue marker between batches
CONNECT_TIMEOUT = 5.0  # seconds the writer thread waits for a TCP syslog server's handshake
SEND_TIMEOUT = 10.0  # seconds a write to it may stall before the connection is dropped
RECONNECT_DELAY = 1.0  # seconds between connection attempts while it refuses


class _Trouble:
    """Log the first failure of a run and the recovery, not every failure."""

    __slots__ = ("what", "failing")

    def __init__(self, what: str) -> None:
        self.what = what
        self.failing = False

    def failed(self, action: str, exc: BaseException) -> None:
        if not self.failing:
            self.failing = True
            log.warning("access log %s: cannot %s: %s (dropping lines until it works again)", self.what, action, exc)

    def worked(self) -> None:
        if self.failing:
            self.failing = False
            log.warning("access log %s: writing again", self.what)


class StreamSink:
    """stdout or a file, written by a thread of its own (see the module docstring).

    ``fd`` writes to an open descriptor the sink does not own (stdout: 1; tests: a
    pipe); else the target's file is opened here, and reopened on ``reopen``."""

    def __init__(self, target: LogTarget, *, max_pending: int, fd: int | None = None) -> None:
        self.target = target
        self.max_pending = max(1, max_pending)
        self.dropped = 0  # under _lock
        self._trouble = _Trouble(str(target))
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._queue: collections.deque[object] = collections.deque()  # (bytes, count) or _REOPEN
        self._queued = 0  # records waiting in _queue
        self._busy = False  # the thread holds a batch taken from the queue
        self._closing = False
        # Owned by the writer thread once it starts.
        self._owned = fd is None
        self._fd: int | None = fd if fd is not None else self._open_first()
        self._chunk = self._chunk_size(self._fd)
        self._thread = threading.Thread(target=self._run, name=f"accesslog {target}", daemon=True)
        self._thread.start()

    # -- the event loop's side ------------------------------------------------------------
    def send(self, messages: Sequence[str]) -> None:
        """Queue one batch (one write); drop the oldest batches past ``max_pending``."""
        data = self._encode(messages)
        with self._lock:
            if self._closing:
                self.dropped += len(messages)
                return
            self._queue.append((data, len(messages)))
            self._queued += len(messages)
            while self._queued > self.max_pending and self._drop_oldest():
                pass
            self._changed.notify_all()

    def _drop_oldest(self) -> bool:
        """Drop the oldest batch but the newest; whether one was dropped."""
        for index, item in enumerate(self._queue):
            if item is _REOPEN:
                continue
            if index == len(self._queue) - 1:
                return False
            del self._queue[index]
            self._queued -= item[1]  # type: ignore[index]
            self.dropped += item[1]  # type: ignore[index]
            return True
        return False

    def reopen(self) -> None:
        """Reopen the file after what is queued (logrotate: move, then signal)."""
        if not self._owned:
            return
        with self._lock:
            if not self._closing:
                self._queue.append(_REOPEN)
                self._changed.notify_all()

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every batch sent so far is written (or dropped); False on timeout.
        Blocks: for shutdown and tests, never for the request path."""
        with self._lock:
            return self._changed.wait_for(lambda: not self._queue and not self._busy, timeout)

    def close(self, timeout: float | None = None) -> None:
        """Stop taking batches; the thread writes what is queued, then closes the file.
        Waits at most ``timeout`` for it (None: until done)."""
        with self._lock:
            self._closing = True
            self._changed.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # -- the writer thread ------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closing:
                    self._changed.wait()
                if not self._queue:
                    break
                items = list(self._queue)
                self._queue.clear()
                self._queued = 0
                self._busy = True
            parts: list[bytes] = []
            count = 0
            for item in items:
                if item is _REOPEN:
                    self._write(b"".join(parts), count)
                    parts, count = [], 0
                    self._reopen()
                else:
                    parts.append(item[0])  # type: ignore[index]
                    count += item[1]  # type: ignore[index]
            self._write(b"".join(parts), count)
            with self._lock:
                self._busy = False
                self._changed.notify_all()
        if self._owned:
            self._release()

    # -- what a subclass for another kind of stream replaces ------------------------------------
    def _encode(self, messages: Sequence[str]) -> bytes:
        return ("\n".join(messages) + "\n").encode("ascii", "backslashreplace")

    def _open_first(self) -> int | None:
        """The descriptor to start with (a file opens here, on the caller's thread)."""
        return self._open()

    def _release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _open(self) -> int | None:
        assert self.target.path is not None
        try:
            fd = os.open(self.target.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        except OSError as exc:
            self._trouble.failed(f"open {self.target.path}", exc)
            return None
        self._trouble.worked()
        return fd

    def _reopen(self) -> None:
        fd = self._open()
        if fd is None:  # keep writing to the old file rather than nowhere
            return
        if self._fd is not None:
            os.close(self._fd)
        self._fd = fd
        self._chunk = self._chunk_size(fd)

    @staticmethod
    def _chunk_size(fd: int | None) -> int | None:
        if fd is None:
            return None
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            return None
        return PIPE_BUF if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) else None

    def _write(self, data: bytes, count: int) -> None:
        if not data:
            return
        if self._fd is None and self._owned:
            self._fd = self._open()
            self._chunk = self._chunk_size(self._fd)
        if self._fd is None:
            with self._lock:
                self.dropped += count
            return
        view, pos, size = memoryview(data), 0, len(data)
        try:
            while pos < size:
                end = size
                if self._chunk is not None and size - pos > self._chunk:
                    cut = data.rfind(b"\n", pos, pos + self._chunk)
                    # A line longer than PIPE_BUF goes whole, in as few writes as it takes.
                    end = cut + 1 if cut >= 0 else (data.find(b"\n", pos + self._chunk) + 1 or size)
                self._write_all(view[pos:end])
                pos = end
        except OSError as exc:
            with self._lock:
                self.dropped += data.count(b"\n", pos)
            self._trouble.failed(f"write to {self.target}", exc)
            return
        self._trouble.worked()

    def _write_all(self, chunk: memoryview) -> None:
        done = 0
        while done < len(chunk):
            try:
                done += os.write(self._fd, chunk[done:])  # type: ignore[arg-type]
            except BlockingIOError:  # a descriptor someone made non-blocking: wait here, not on the loop
                poller = select.poll()  # not select(): descriptors can go past FD_SETSIZE
                poller.register(self._fd, select.POLLOUT)  # type: ignore[arg-type]
                poller.poll(1000)


class TcpSyslogSink(StreamSink):
    """syslog over TCP, octet-counted (see the module docstring)."""

    def __init__(self, target: LogTarget, *, max_pending: int) -> None:
        self._sock: socket.socket | None = None  # the stream (the base class's _fd stays None)
        self._next_attempt = 0.0  # time.monotonic() before which no connection is tried
        super().__init__(target, max_pending=max_pending)

    def _encode(self, messages: Sequence[str]) -> bytes:
        return b"".join(b"%d %s" % (len(message), message) for message in encode_datagrams(messages, MAX_DATAGRAM))

    def _open_first(self) -> int | None:
        return None  # connected by the writer thread, with its first batch

    def _connect(self) -> bool:
        now = time.monotonic()
        if now < self._next_attempt:
            return False
        address = self.target.address
        assert address is not None
        try:
            sock = socket.create_connection((address.host, address.port), timeout=CONNECT_TIMEOUT)
        except OSError as exc:
            self._next_attempt = now + RECONNECT_DELAY
            self._trouble.failed("connect", exc)
            return False
        sock.settimeout(SEND_TIMEOUT)
        self._sock = sock
        return True

    def _release(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None

    def _reopen(self) -> None:
        self._release()  # the next batch connects anew (a server restarted by logrotate)
        self._next_attempt = 0.0

    def _server_closed(self) -> bool:
        """Whether the server has closed (or reset) the connection: it never sends, so a
        readable socket means that. Checked before a write, which would otherwise be
        taken by the kernel and lost."""
        assert self._sock is not None
        poller = select.poll()  # not select(): a worker's descriptors go past FD_SETSIZE
        poller.register(self._sock, select.POLLIN)
        try:
            if not poller.poll(0):
                return False
            return not self._sock.recv(4096, socket.MSG_PEEK)
        except OSError:
            return True

    def _write(self, data: bytes, count: int) -> None:
        if not data:
            return
        if self._sock is not None and self._server_closed():
            self._release()
        if self._sock is None and not self._connect():
            with self._lock:
                self.dropped += count
            return
        assert self._sock is not None
        view, sent = memoryview(data), 0
        try:
            while sent < len(data):
                sent += self._sock.send(view[sent:])
        except OSError as exc:
            with self._lock:
                self.dropped += unsent_frames(data, sent)
            self._trouble.failed("send", exc)
            self._release()
            return
        self._trouble.worked()


def unsent_frames(data: bytes, sent: int) -> int:
    """The octet-counted frames of ``data`` not wholly within its first ``sent`` bytes."""
    count = at = 0
    while at < len(data):
        space = data.index(b" ", at)
        end = space + 1 + int(data[at:space])
        if end > sent:
            count += 1
        at = end
    return count


class _Refused(OSError):
    """A datagram the kernel refused after others in the same call: ``sendmmsg`` drops
    the reason (most often a refused port's ICMP, reported once), so it is handled as a
    send error: dropped, counted, and the socket reconnected for the next one."""

    def __init__(self) -> None:
        super().__init__("datagram refused (reason not reported after the first of a batch)")


class DatagramSink:
    """syslog over UDP or a unix datagram socket: one datagram per message, non-blocking,
    many per system call (``lbcore._fastpath.sockio``)."""

    def __init__(self, target: LogTarget) -> None:
        self.target = target
        self.dropped = 0
        self._trouble = _Trouble(str(target))
        self._sock: socket.socket | None = None

    def _connect(self) -> socket.socket:
        if self.target.kind == "syslog+unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            where: object = self.target.path
        else:
            address = self.target.address
            assert address is not None
            sock = socket.socket(address.family, socket.SOCK_DGRAM)
            where = (address.host, address.port)
        try:
            sock.setblocking(False)
            sock.connect(where)  # type: ignore[arg-type]
        except OSError:
            sock.close()
            raise
        return sock

    def send(self, messages: Sequence[str]) -> None:
        datagrams = encode_datagrams(messages, MAX_DATAGRAM)  # ASCII, backslashreplace, cut
        total = len(datagrams)
        index = 0
        reconnected = False
        while index < total:
            try:
                if self._sock is None:
                    if reconnected:  # one attempt per batch
                        self.dropped += total - index
                        return
                    reconnected = True
                    self._sock = self._connect()
                # Many datagrams per system call (sendmmsg). It raises why the first one
                # was refused; it stops short, without a reason, at a later refused one.
                index += send_datagrams(self._sock, datagrams, index)
                if index < total:
                    raise _Refused()
            except (BlockingIOError, InterruptedError) as exc:  # the receiver is behind: drop this one
                self.dropped += 1
                self._trouble.failed("send", exc)
                index += 1
                continue
            except OSError as exc:
                self.dropped += 1
                self._trouble.failed("send", exc)
                if exc.errno != errno.EMSGSIZE:
                    self.close()
                index += 1
                continue
            self._trouble.worked()

    def reopen(self) -> None:
        """Reconnect on the next message (a syslog daemon restarted by logrotate)."""
        self.close()

    def drain(self, timeout: float | None = None) -> bool:
        return True  # sends are done in send()

    def close(self, timeout: float | None = None) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def make_sink(target: LogTarget, *, max_pending: int) -> StreamSink | DatagramSink:
    if target.kind == "syslog+tcp":
        return TcpSyslogSink(target, max_pending=max_pending)
    if target.is_syslog:
        return DatagramSink(target)
    return StreamSink(target, max_pending=max_pending, fd=1 if target.kind == "stdout" else None)
