"""Where a chunked body ends (RFC 9112 7.1), so that llhttp can be fed one response at a time."""

from __future__ import annotations

import re

from ._http1_events import ProtocolError

__all__ = ["ChunkScanner"]


class ChunkScanner:
    """Finds the end of a chunked body (RFC 9112 7.1) without decoding it.

    The ResponseReader feeds llhttp one message at a time, and only this tells
    where a chunked message stops. It is lenient about what llhttp checks (the
    same bytes go to llhttp, which rejects bad chunk lines); it only has to be
    exact for valid input and bounded for any input.
    """

    __slots__ = ("_state", "_left", "_line", "_trailer_bytes", "_max_trailer_bytes")

    SIZE, DATA, TRAILER = 0, 1, 2
    MAX_SIZE_LINE = 4096  # chunk-size and chunk extensions

    _HEX = re.compile(rb"[0-9A-Fa-f]+")

    def __init__(self, max_trailer_bytes: int) -> None:
        self._max_trailer_bytes = max_trailer_bytes
        self.reset()

    def reset(self) -> None:
        self._state = self.SIZE
        self._left = 0
        self._line = b""
        self._trailer_bytes = 0

    def scan(self, data: bytes, pos: int, end: int) -> int:
        """The index just after the body's last CRLF in data[pos:end], or -1."""
        while pos < end:
            if self._state == self.DATA:
                take = min(self._left, end - pos)
                pos += take
                self._left -= take
                if not self._left:
                    self._state = self.SIZE
                continue
            nl = data.find(b"\n", pos, end)
            if nl < 0:
                self._line += data[pos:end]
                self._check_line(len(self._line))
                return -1
            line = self._line + data[pos:nl] if self._line else data[pos:nl]
            self._line = b""
            pos = nl + 1
            self._check_line(len(line))
            if self._state == self.SIZE:
                size = line.split(b";", 1)[0].rstrip(b"\r").strip(b" \t")
                if not self._HEX.fullmatch(size):
                    raise ProtocolError(f"invalid chunk size {size[:20]!r}", 400)
                n = int(size, 16)
                if n:
                    self._left = n + 2  # the data and its CRLF
                    self._state = self.DATA
                else:
                    self._state = self.TRAILER
            elif line == b"\r" or not line:
                return pos
            else:
                self._trailer_bytes += len(line) + 1
                if self._trailer_bytes > self._max_trailer_bytes:
                    raise ProtocolError("trailer section too large", 431)
        return -1

    def _check_line(self, length: int) -> None:
        if self._state == self.SIZE:
            if length > self.MAX_SIZE_LINE:
                raise ProtocolError("chunk size line too long", 400)
        elif self._trailer_bytes + length > self._max_trailer_bytes:
            raise ProtocolError("trailer section too large", 431)
