"""Socket calls the engine makes often enough to do in C: ``send_datagrams``, ``cork``.

- ``send_datagrams(sock, datagrams, start=0)``: ``datagrams[start:]`` out in order on a
  connected datagram socket, stopping at the first refused; returns how many went out,
  raises the first one's ``OSError`` (the access log's syslog sink).
- ``encode_datagrams(messages, limit)``: a batch of text lines as datagrams (ASCII,
  ``backslashreplace``, at most ``limit`` bytes each).
- ``cork(sock)``: TCP_CORK on a TCP socket (a client connection's last write).
- ``send_now(sock, data)``: what the kernel takes of ``data`` at once, without
  blocking or raising (a client connection's writes while nothing is buffered);
  ``DescriptorWriter().send_now(fd, data)`` the same on a descriptor taken once (a C
  method in the compiled twin, which the compiled engine calls directly).
- ``peer_name(sock)``: ``sock.getpeername()``, None when it fails (a client
  connection's address, once per connection).

Two twins with one interface: ``_sockio`` (Cython: ``sendmmsg(2)``, BATCH datagrams
per system call; ``setsockopt`` on the descriptor) and ``_sockio_py`` (pure Python: the
socket object's ``send`` per datagram and ``setsockopt``, the reference); the compiled
one is used when built unless ``LBCORE_NO_EXTENSIONS=1``.
"""

from __future__ import annotations

from lbcore._fastpath import _sockio_py, twins

__all__ = ["DescriptorWriter", "IMPLEMENTATION", "IMPLEMENTATIONS", "cork", "encode_datagrams", "peer_name",
           "send_datagrams", "send_now"]

IMPLEMENTATIONS, _impl = twins(_sockio_py, "_sockio")
IMPLEMENTATION: str = _impl.IMPLEMENTATION
send_datagrams = _impl.send_datagrams
cork = _impl.cork
encode_datagrams = _impl.encode_datagrams
peer_name = _impl.peer_name
send_now = _impl.send_now
DescriptorWriter = _impl.DescriptorWriter
