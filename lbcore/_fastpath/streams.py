"""A listener's accept path and its connections' transports (``serve``, ``Stream``).

``serve(loop, sock, protocol_factory)`` accepts on a listening socket and gives each
connection a ``Stream``, an asyncio transport: the worker's listeners run on it instead
of ``loop.create_server``. The contract is in ``_streams_py`` (the pure twin, on the
loop's ``add_reader``); ``_streams`` (Cython) does the same on an epoll set of its own
that the loop reads as one descriptor, and is used when built unless
``LBCORE_NO_EXTENSIONS=1``. ``connect(loop, protocol_factory, host, port)`` makes a stream
of a connection to an IP address (the worker's member connections, when plain TCP).
"""

from __future__ import annotations

from lbcore._fastpath import _streams_py, twins

__all__ = ["ACCEPT_BATCH", "Acceptor", "IMPLEMENTATION", "IMPLEMENTATIONS", "Stream", "StreamSocket", "connect",
           "ip_family", "serve"]

IMPLEMENTATIONS, _impl = twins(_streams_py, "_streams")
IMPLEMENTATION: str = _impl.IMPLEMENTATION
ACCEPT_BATCH: int = _impl.ACCEPT_BATCH
Acceptor = _impl.Acceptor
Stream = _impl.Stream
StreamSocket = _impl.StreamSocket
serve = _impl.serve
connect = _impl.connect
ip_family = _impl.ip_family
