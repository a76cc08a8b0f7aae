"""HTTP/1.1 events, the pure twin: frozen, slotted dataclasses (the reference).

``lbcore.l7._http1_events`` documents the events and re-exports the twin that serves
(``lbcore._fastpath.events``). ``_events`` (Cython) is the compiled twin: the same
classes as extension types with C fields, so the compiled request path builds an
event without a dictionary or an interpreted ``__init__`` and reads its fields
directly; it behaves as these dataclasses do (constructor and its checks, ``==``,
``hash``, ``repr``, ``dataclasses.fields``/``replace``, ``FrozenInstanceError`` on
assignment).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["IMPLEMENTATION", "Data", "EndOfMessage", "Headers", "InformationalResponse", "Request", "Response"]

IMPLEMENTATION = "pure"

Headers = tuple[tuple[str, str], ...]

VERSIONS = ("1.0", "1.1")


@dataclass(frozen=True, slots=True)
class Request:
    """A request head.

    ``keep_alive`` follows RFC 9112 9.3: HTTP/1.1 is persistent unless a
    Connection header says "close"; HTTP/1.0 only with "keep-alive".
    ``content_length`` is the Content-Length header (None when absent);
    ``chunked`` means Transfer-Encoding: chunked. A request with neither has
    no body. ``upgrade`` is the Upgrade header value of an HTTP/1.1 request
    whose Connection header carries the "upgrade" option, else None.
    """

    method: str
    target: str
    headers: Headers
    http_version: str
    keep_alive: bool
    chunked: bool
    content_length: int | None
    expect_continue: bool
    upgrade: str | None

    def __post_init__(self) -> None:
        if self.http_version not in VERSIONS:
            raise ValueError(f"http_version must be 1.0 or 1.1, not {self.http_version!r}")


@dataclass(frozen=True, slots=True)
class Response:
    """A final response head (status 101 included: the tunnel starts after it).

    ``chunked`` and ``content_length`` describe the framing headers as received;
    whether a body follows is decided by RFC 9112 6.3 (none after HEAD, 101,
    204, 304 or a 2xx to CONNECT) and shown by the Data/EndOfMessage events.
    ``keep_alive`` is False for a close-delimited body and after a 101.
    """

    status: int
    reason: str
    headers: Headers
    http_version: str
    keep_alive: bool
    chunked: bool
    content_length: int | None

    def __post_init__(self) -> None:
        if self.http_version not in VERSIONS:
            raise ValueError(f"http_version must be 1.0 or 1.1, not {self.http_version!r}")
        if not (200 <= self.status <= 999 or self.status == 101):
            raise ValueError(f"a final response has status 101 or 200-999, not {self.status}")


@dataclass(frozen=True, slots=True)
class InformationalResponse:
    """A 1xx response other than 101 (100 Continue, 103 Early Hints, ...)."""

    status: int
    reason: str
    headers: Headers

    def __post_init__(self) -> None:
        if not 100 <= self.status <= 199 or self.status == 101:
            raise ValueError(f"an informational response has status 1xx but not 101, not {self.status}")


@dataclass(frozen=True, slots=True)
class Data:
    """Body bytes, de-chunked; never empty when a reader makes it."""

    data: bytes


@dataclass(frozen=True, slots=True)
class EndOfMessage:
    """The end of a message body, with the trailer fields of a chunked body."""

    trailers: Headers = field(default=())
