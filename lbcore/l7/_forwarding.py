"""The value types of header rewriting: ``ForwardingPolicy`` and ``ResponseFraming``.

They live apart from ``lbcore.l7.rewrite`` so both twins of the rewrite functions
(``lbcore._fastpath._rewrite_py`` and the compiled ``_rewrite``) can import them
without an import cycle; ``lbcore.l7.rewrite`` re-exports them.
"""

from __future__ import annotations

from typing import Sequence

__all__ = ["ForwardingPolicy", "ResponseFraming"]


class ForwardingPolicy:
    """Per-listener header insertion settings, built once per revision."""

    __slots__ = ("proto", "port", "xff", "xfp", "xfport", "forwarded", "add_headers", "_replaced")

    def __init__(
        self,
        proto: str,
        port: int,
        *,
        xff: bool = True,
        xfp: bool = True,
        xfport: bool = False,
        forwarded: bool = False,
        add_headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.proto = proto
        self.port = str(port)
        self.xff = xff
        self.xfp = xfp
        self.xfport = xfport
        self.forwarded = forwarded
        self.add_headers = tuple(add_headers)
        replaced = {name.lower() for name, _ in self.add_headers}
        if xfp:
            replaced.add("x-forwarded-proto")
        if xfport:
            replaced.add("x-forwarded-port")
        self._replaced = frozenset(replaced)


class ResponseFraming:
    """How the engine frames a response body towards the client."""

    __slots__ = ("head", "keep_alive", "chunked", "has_body")

    def __init__(self, head: bytes, keep_alive: bool, chunked: bool, has_body: bool) -> None:
        self.head = head
        self.keep_alive = keep_alive
        self.chunked = chunked
        self.has_body = has_body
