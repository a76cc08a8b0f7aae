"""OpenSSL settings that Python's ``ssl`` lacks, applied to an ``ssl.SSLContext``.

- ``install_ticket_keys(context, keys)``: a session-ticket key ring (newest last
  encrypts, every key decrypts), replaceable at any time; ``ticket_key_names``.
- ``set_ciphersuites`` (TLS 1.3), ``set_groups`` (key exchange groups, the full
  list: ``ssl`` has ``set_ecdh_curve``, one curve only), ``set_session_cache_size``
  and ``session_cache_size`` (the server's session-ID cache; 0 is off),
  ``send_configured_chain_only`` (no chain completed by OpenSSL at each handshake).

The ring has two twins with one interface: ``_sslctx`` (Cython: C callback, no GIL)
and ``_sslctx_py`` (ctypes: the reference); the compiled one is used when built
unless ``LBCORE_NO_EXTENSIONS=1``. Both reach the libssl that ``_ssl`` itself uses
(see ``_libssl``); where that cannot be done safely every function here raises
``OpenSSLUnavailable`` with the reason, and ``unavailable_reason()`` says it ahead.
"""

from __future__ import annotations

from lbcore._fastpath import twins, _libssl, _sslctx_py
from lbcore._fastpath._libssl import (
    OpenSSLUnavailable,
    library_version,
    send_configured_chain_only,
    sends_configured_chain_only,
    session_cache_size,
    set_ciphersuites,
    set_groups,
    set_session_cache_size,
)

__all__ = [
    "IMPLEMENTATION",
    "IMPLEMENTATIONS",
    "MAX_KEYS",
    "OpenSSLUnavailable",
    "install_ticket_keys",
    "library_version",
    "send_configured_chain_only",
    "sends_configured_chain_only",
    "session_cache_size",
    "set_ciphersuites",
    "set_groups",
    "set_session_cache_size",
    "ticket_key_names",
    "unavailable_reason",
]

IMPLEMENTATIONS, _impl = twins(_sslctx_py, "_sslctx")
IMPLEMENTATION: str = _impl.IMPLEMENTATION
MAX_KEYS = _sslctx_py.MAX_KEYS
install_ticket_keys = _impl.install_ticket_keys
ticket_key_names = _impl.ticket_key_names


def unavailable_reason() -> str | None:
    """None when OpenSSL can be reached, else why not."""
    try:
        _libssl.load()
    except OpenSSLUnavailable as exc:
        return str(exc)
    return None
