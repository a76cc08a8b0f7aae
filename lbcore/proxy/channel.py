"""The supervisor <-> worker control channel: JSON messages, with file descriptors.

A unix stream socketpair; each message is a 4-byte big-endian length and a JSON
object. Listening sockets travel as SCM_RIGHTS ancillary data; a message that
carries descriptors says how many in its ``nfds`` field, and the receiver takes
that many from the descriptors received so far, in order. This is how a worker
gets its listening sockets at start and new ones on reload, without fork.
"""

from __future__ import annotations

import array
import json
import os
import socket
import struct
from collections import deque
from typing import Any

__all__ = ["Channel", "MAX_MESSAGE"]

MAX_MESSAGE = 64 * 1024 * 1024  # a Spec with many members and certificates is still far smaller
_HEADER = struct.Struct("!I")
_MAX_FDS_PER_READ = 64


class Channel:
    """One end of the control socketpair. Sends block; receiving is driven by ``feed``."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = bytearray()
        self._fds: deque[int] = deque()
        self._ready: deque[tuple[dict[str, Any], list[int]]] = deque()

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, message: dict[str, Any], fds: list[int] | tuple[int, ...] = ()) -> None:
        if fds:
            message = {**message, "nfds": len(fds)}
        payload = json.dumps(message, separators=(",", ":")).encode()
        data = _HEADER.pack(len(payload)) + payload
        if fds:
            sent = self.sock.sendmsg([data[:1]], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
            data = data[sent:]
        if data:
            self.sock.sendall(data)

    def receive(self) -> list[tuple[dict[str, Any], list[int]]] | None:
        """Read what is available (non-blocking socket); None at EOF."""
        try:
            data, ancdata, _flags, _addr = self.sock.recvmsg(
                256 * 1024, socket.CMSG_SPACE(_MAX_FDS_PER_READ * array.array("i").itemsize)
            )
        except (BlockingIOError, InterruptedError):
            return []
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
                self._fds.extend(fds)
        if not data:
            return None
        self._buffer += data
        return self._drain()

    def receive_blocking(self) -> tuple[dict[str, Any], list[int]] | None:
        """Wait for one whole message (a worker, before its event loop runs)."""
        while not self._ready:
            got = self.receive()
            if got is None:
                return None
            self._ready.extend(got)
        return self._ready.popleft()

    def take_ready(self) -> list[tuple[dict[str, Any], list[int]]]:
        """Messages read ahead by receive_blocking and not yet handled."""
        ready = list(self._ready)
        self._ready.clear()
        return ready

    def _drain(self) -> list[tuple[dict[str, Any], list[int]]]:
        out = []
        buf = self._buffer
        while len(buf) >= 4:
            (size,) = _HEADER.unpack_from(buf)
            if size > MAX_MESSAGE:
                raise ValueError(f"control message of {size} bytes is too large")
            if len(buf) < 4 + size:
                break
            message = json.loads(bytes(buf[4 : 4 + size]))
            del buf[: 4 + size]
            nfds = int(message.get("nfds", 0))
            fds = [self._fds.popleft() for _ in range(min(nfds, len(self._fds)))]
            out.append((message, fds))
        return out

    def close(self) -> None:
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds.clear()
        self.sock.close()
