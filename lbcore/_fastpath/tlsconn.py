"""Server-side TLS for https listeners, over the loop's plain TCP transports.

``TlsServer(contexts, lookup, default_index, handshake_timeout, loop, on_failed, direct_socket)``
holds a listener's contexts for one revision; ``server.connection(app)`` is the protocol
to give the loop for an accepted connection, and the transport ``app`` (the
engine's ``ClientConnection``) sees, carrying plaintext. Behaviour: see
``_tlsconn_py``.

Two twins with one interface: ``_tlsconn_py`` (``ssl.SSLObject`` on memory BIOs:
the reference) and ``_tlsconn`` (Cython: OpenSSL's C API on the same ``SSL_CTX``,
no Python between the socket and the engine); the compiled one is used when built
unless ``LBCORE_NO_EXTENSIONS=1`` and when the libssl of Python's ``_ssl`` can be
reached (see ``_libssl``); where it cannot, the pure one serves.
"""

from __future__ import annotations

from lbcore._fastpath import _libssl, _tlsconn_py, twins

__all__ = ["IMPLEMENTATION", "IMPLEMENTATIONS", "TlsConnection", "TlsServer"]

IMPLEMENTATIONS, _impl = twins(_tlsconn_py, "_tlsconn")
if _impl is not _tlsconn_py:
    try:
        _libssl.load()
    except _libssl.OpenSSLUnavailable:  # the compiled twin cannot reach OpenSSL here
        IMPLEMENTATIONS.pop("compiled")
        _impl = _tlsconn_py
IMPLEMENTATION: str = _impl.IMPLEMENTATION
TlsServer = _impl.TlsServer
TlsConnection = _impl.TlsConnection
