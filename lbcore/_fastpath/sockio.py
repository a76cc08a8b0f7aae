"""Socket output the engine does often enough to batch: ``send_datagrams``.

- ``send_datagrams(sock, datagrams, start=0)``: ``datagrams[start:]`` out in order on a
  connected datagram socket, stopping at the first refused; returns how many went out,
  raises the first one's ``OSError`` (the access log's syslog sink).

Two twins with one interface: ``_sockio`` (Cython: ``sendmmsg(2)``, BATCH datagrams per
system call) and ``_sockio_py`` (pure Python: one ``send`` per datagram, the
reference); the compiled one is used when built unless ``LBCORE_NO_EXTENSIONS=1``.
"""

from __future__ import annotations

from lbcore._fastpath import _sockio_py, twins

__all__ = ["IMPLEMENTATION", "IMPLEMENTATIONS", "send_datagrams"]

IMPLEMENTATIONS, _impl = twins(_sockio_py, "_sockio")
IMPLEMENTATION: str = _impl.IMPLEMENTATION
send_datagrams = _impl.send_datagrams
