"""Flow control and lazy deadlines: the two small helpers every connection uses.

Flow control: a transport is paused for reading while *any* reason holds (the peer's
write buffer is full, a pipelined request waits its turn, a request body is buffered
while the backend connects). Pause and resume are idempotent per reason, so the
side that paused is the only one that can resume, and a transport never resumes
early because another reason went away.

Deadlines: resetting a timer on every read (cancel + call_later) costs two heap
operations per packet. Instead a connection moves ``deadline.expires`` (one float
store); the single timer, when it fires early, re-arms itself for the remaining
time. A new expiry only needs a new timer when it comes before the time the timer
is *armed* for (not before the last expiry asked for): a connection that switches
between a long idle timeout and a shorter request timeout re-arms about once per
timeout period, not on every request. Inactivity timeouts therefore cost one timer
per connection and almost nothing per read.

``suspend()`` is the lazy form of ``cancel()``: no expiry until the next ``extend``,
while the armed timer stays in place (when it goes off it finds nothing to do and
ends). A client connection suspends its deadline while a response is awaited, every
request; cancelling there cost two timer creations per request (re-armed for the
keep-alive timeout, then again for the next request's client timeout).
"""

from __future__ import annotations

import asyncio
from typing import Callable

__all__ = ["ReadGate", "Deadline"]

_NEVER = float("inf")


def _nothing() -> None:
    """The callback of a closed Deadline."""


class ReadGate:
    """Pauses a transport's reading while at least one reason is active."""

    __slots__ = ("transport", "reasons")

    def __init__(self, transport: asyncio.Transport | None = None) -> None:
        self.transport = transport
        self.reasons = 0  # bit set of reasons

    # Reasons (bits): why a side is not read.
    PEER_FULL = 1  # the other side's write buffer is above its high-water mark
    PIPELINE = 2  # a pipelined request waits for the previous response
    BUFFERED = 4  # body bytes buffered while the backend is not connected yet
    LIMIT = 8  # a listener or queue limit

    def pause(self, reason: int) -> None:
        was = self.reasons
        self.reasons = was | reason
        if not was and self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume(self, reason: int) -> None:
        was = self.reasons
        if not was & reason:
            return
        self.reasons = was & ~reason
        if not self.reasons and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def attach(self, transport: asyncio.Transport) -> None:
        """Bind the gate to a transport, applying a pause decided before it existed."""
        self.transport = transport
        if self.reasons:
            transport.pause_reading()


class Deadline:
    """One lazily re-armed timer: ``extend(seconds)`` is cheap, ``cancel()`` stops it."""

    __slots__ = ("loop", "clock", "callback", "expires", "armed", "handle")

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        self.loop = loop
        self.clock = loop.time  # bound once: extend runs several times a request
        self.callback = callback
        self.expires = 0.0  # when the deadline is
        self.armed = 0.0  # when the timer goes off (<= expires while a timer runs)
        self.handle: asyncio.TimerHandle | None = None

    def extend(self, seconds: float) -> None:
        """Expire ``seconds`` from now (replacing any earlier or later expiry)."""
        expires = self.clock() + seconds
        self.expires = expires
        handle = self.handle
        if handle is None:
            self.armed = expires
            self.handle = self.loop.call_at(expires, self._fire)
        elif expires < self.armed:
            # Earlier than the timer will go off: that needs a new timer; later is lazy.
            handle.cancel()
            self.armed = expires
            self.handle = self.loop.call_at(expires, self._fire)

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def close(self) -> None:
        """Stop for good: cancel, and let go of the owner's callback. A bound method of
        the owner held here keeps owner and deadline in a reference cycle that only
        the garbage collector would free; without it a closed connection is freed
        at once, by reference counting."""
        self.cancel()
        self.callback = _nothing

    def suspend(self) -> None:
        """No expiry until the next ``extend`` (which then costs no new timer if later)."""
        self.expires = _NEVER

    @property
    def active(self) -> bool:
        """A timer runs and an expiry is set (neither cancelled nor suspended)."""
        return self.handle is not None and self.expires != _NEVER

    def _fire(self) -> None:
        if self.expires == _NEVER:  # suspended: the next extend arms a timer again
            self.handle = None
            return
        remaining = self.expires - self.clock()
        if remaining > 0.001:
            self.armed = self.expires
            self.handle = self.loop.call_at(self.expires, self._fire)
            return
        self.handle = None
        self.callback()
