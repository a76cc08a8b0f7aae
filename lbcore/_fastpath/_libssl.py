"""The libssl that Python's own ``_ssl`` module uses, reached through ctypes.

Python's ``ssl`` cannot set session-ticket keys, TLS 1.3 cipher suites, the key
exchange groups (beyond one curve) or the server session cache; OpenSSL can. This
module finds the *same* libssl/libcrypto that ``_ssl`` is linked to and the
``SSL_CTX *`` inside an ``ssl.SSLContext``, so the shims in ``_sslctx_py`` (ctypes)
and ``_sslctx`` (Cython) can call OpenSSL on it, and ``_tlsconn`` (Cython) can make
its connections' ``SSL *`` from it.

How the library is found: ``dlopen`` of ``_ssl``'s own file returns the handle it
was loaded with (it is loaded already), and ``dlsym`` on a handle searches that
object and then its dependencies: so every symbol resolves to exactly the libssl
and libcrypto ``_ssl`` uses, never another copy on the system. Then the version
string of that library must equal ``ssl.OPENSSL_VERSION``, and only OpenSSL 3
is accepted (the ticket callback used is the 3.0 EVP one); anything else is
refused with ``OpenSSLUnavailable`` saying why.

How the ``SSL_CTX *`` is found: CPython's ``PySSLContext`` is
``{ PyObject_HEAD; SSL_CTX *ctx; ... }`` (Modules/_ssl.c), so the pointer sits
right after the object header, at ``id(context) + object.__basicsize__``. It is
checked before use: ``SSL_CTX_get_options`` on it must equal ``context.options``.

Constants are OpenSSL 3's ABI (ssl.h, core.h, crypto.h), stable across 3.x; the
headers are not needed to build or run.
"""

from __future__ import annotations

import ctypes
import os
import ssl
import sys
import threading
from ctypes import POINTER, c_char_p, c_int, c_long, c_size_t, c_ubyte, c_uint, c_uint64, c_ulong, c_void_p
from typing import Any

__all__ = [
    "OpenSSLUnavailable",
    "OSSL_PARAM",
    "load",
    "ssl_ctx_pointer",
    "symbol_address",
    "set_session_cache_size",
    "session_cache_size",
    "set_ciphersuites",
    "set_groups",
    "send_configured_chain_only",
    "sends_configured_chain_only",
    "library_version",
]

# ssl.h
SSL_CTRL_SET_SESS_CACHE_SIZE = 42
SSL_CTRL_GET_SESS_CACHE_SIZE = 43
SSL_CTRL_SET_SESS_CACHE_MODE = 44
SSL_CTRL_GET_SESS_CACHE_MODE = 45
SSL_CTRL_SET_GROUPS_LIST = 92
SSL_CTRL_MODE = 33
SSL_MODE_NO_AUTO_CHAIN = 0x00000008
SSL_SESS_CACHE_OFF = 0x0000
SSL_SESS_CACHE_SERVER = 0x0002
# crypto.h, evp.h, core.h, params.h
OPENSSL_VERSION = 0  # OpenSSL_version(OPENSSL_VERSION): "OpenSSL 3.0.13 30 Jan 2024"
CRYPTO_EX_INDEX_SSL_CTX = 1
TLS1_3_VERSION = 0x0304
EVP_MAX_IV_LENGTH = 16
OSSL_PARAM_UTF8_STRING = 4
OSSL_PARAM_OCTET_STRING = 5
OSSL_PARAM_UNMODIFIED = ctypes.c_size_t(-1).value
MIN_OPENSSL = 0x30000000  # 3.0.0


class OpenSSLUnavailable(RuntimeError):
    """libssl cannot be reached safely from here; the message says why."""


class OSSL_PARAM(ctypes.Structure):
    """``struct ossl_param_st`` (core.h)."""

    _fields_ = [
        ("key", c_char_p),
        ("data_type", c_uint),
        ("data", c_void_p),
        ("data_size", c_size_t),
        ("return_size", c_size_t),
    ]


# The ticket key callback of SSL_CTX_set_tlsext_ticket_key_evp_cb (OpenSSL 3.0):
# int cb(SSL *s, unsigned char key_name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
#        EVP_CIPHER_CTX *ctx, EVP_MAC_CTX *hctx, int enc)
TICKET_KEY_CB = ctypes.CFUNCTYPE(c_int, c_void_p, POINTER(c_ubyte), POINTER(c_ubyte), c_void_p, c_void_p, c_int)

_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "ERR_clear_error": (None, []),
    "ERR_peek_error": (c_ulong, []),
    "OpenSSL_version": (c_char_p, [c_int]),
    "OpenSSL_version_num": (c_ulong, []),
    "SSL_CTX_ctrl": (c_long, [c_void_p, c_int, c_long, c_void_p]),
    "SSL_CTX_get_options": (c_uint64, [c_void_p]),
    "SSL_CTX_set_ciphersuites": (c_int, [c_void_p, c_char_p]),
    "SSL_CTX_set_tlsext_ticket_key_evp_cb": (c_int, [c_void_p, c_void_p]),
    "SSL_CTX_set_ex_data": (c_int, [c_void_p, c_int, c_void_p]),
    "SSL_CTX_get_ex_data": (c_void_p, [c_void_p, c_int]),
    "SSL_get_SSL_CTX": (c_void_p, [c_void_p]),
    "SSL_version": (c_int, [c_void_p]),
    "CRYPTO_get_ex_new_index": (c_int, [c_int, c_long, c_void_p, c_void_p, c_void_p, c_void_p]),
    "RAND_bytes": (c_int, [c_void_p, c_int]),
    "EVP_aes_128_cbc": (c_void_p, []),
    "EVP_aes_256_cbc": (c_void_p, []),
    "EVP_EncryptInit_ex": (c_int, [c_void_p, c_void_p, c_void_p, c_void_p, c_void_p]),
    "EVP_DecryptInit_ex": (c_int, [c_void_p, c_void_p, c_void_p, c_void_p, c_void_p]),
    "EVP_MAC_CTX_set_params": (c_int, [c_void_p, POINTER(OSSL_PARAM)]),
    "ERR_clear_error": (None, []),
}

_lock = threading.Lock()
_lib: Any = None
_error: str | None = None


def _open() -> Any:
    """The ctypes handle whose symbols are ``_ssl``'s libssl and libcrypto."""
    if sys.implementation.name != "cpython":
        raise OpenSSLUnavailable(f"needs CPython's _ssl module layout (this is {sys.implementation.name})")
    import _ssl

    path = getattr(_ssl, "__file__", None)
    if path:
        # Already loaded: dlopen returns its handle; RTLD_NOLOAD makes sure of it.
        mode = ctypes.RTLD_LOCAL | getattr(os, "RTLD_NOLOAD", 0) | getattr(os, "RTLD_LAZY", 0)
        try:
            return ctypes.CDLL(path, mode=mode)
        except OSError as exc:
            raise OpenSSLUnavailable(f"cannot open _ssl's library {path}: {exc}") from None
    # _ssl built into the interpreter: its OpenSSL symbols, if exported, are global.
    return ctypes.CDLL(None)


def _bind(handle: Any) -> Any:
    missing = []
    for name, (restype, argtypes) in _SIGNATURES.items():
        try:
            function = getattr(handle, name)
        except AttributeError:
            missing.append(name)
            continue
        function.restype = restype
        function.argtypes = argtypes
    if missing:
        raise OpenSSLUnavailable(
            f"the libssl that Python's ssl module uses does not export {', '.join(missing)} "
            f"({ssl.OPENSSL_VERSION}; OpenSSL 3.0 or later, linked dynamically, is needed)"
        )
    version = handle.OpenSSL_version(OPENSSL_VERSION).decode("ascii", "replace")
    if version != ssl.OPENSSL_VERSION:
        raise OpenSSLUnavailable(
            f"libssl found ({version}) is not the one Python's ssl module uses ({ssl.OPENSSL_VERSION})"
        )
    if handle.OpenSSL_version_num() < MIN_OPENSSL:
        raise OpenSSLUnavailable(f"OpenSSL 3.0 or later is needed, Python's ssl module uses {version}")
    return handle


def load() -> Any:
    """The bound library (ctypes functions with their signatures), loaded once.
    Raises OpenSSLUnavailable, the same reason every time, when it cannot be used."""
    global _lib, _error
    with _lock:
        if _lib is None and _error is None:
            try:
                _lib = _bind(_open())
            except OpenSSLUnavailable as exc:
                _error = str(exc)
        if _error is not None:
            raise OpenSSLUnavailable(_error)
        return _lib


def library_version() -> str:
    """The version string of the libssl in use (equal to ``ssl.OPENSSL_VERSION``)."""
    return load().OpenSSL_version(OPENSSL_VERSION).decode("ascii")


def symbol_address(lib: Any, name: str) -> int:
    """The address of OpenSSL function ``name`` in ``lib`` (from ``load()``), for the
    compiled modules to call it through a C function pointer."""
    address = ctypes.cast(getattr(lib, name), c_void_p).value
    if not address:
        raise OpenSSLUnavailable(f"no address for {name}")
    return address


def ssl_ctx_pointer(context: ssl.SSLContext) -> int:
    """The ``SSL_CTX *`` of a Python SSLContext, checked (see the module docstring)."""
    lib = load()
    import _ssl

    if not isinstance(context, _ssl._SSLContext):
        raise TypeError(f"expected an ssl.SSLContext, got {type(context).__name__}")
    pointer = c_void_p.from_address(id(context) + object.__basicsize__).value
    if not pointer:
        raise OpenSSLUnavailable("the SSLContext has no SSL_CTX (unexpected _ssl layout)")
    if lib.SSL_CTX_get_options(pointer) != int(context.options):
        raise OpenSSLUnavailable("SSL_CTX pointer check failed (unexpected _ssl object layout): refusing to use it")
    return pointer


# -- plain setters: not hot, one implementation for both twins -------------------------------


def set_session_cache_size(context: ssl.SSLContext, entries: int) -> None:
    """Server-side session cache (session-ID resumption) with room for ``entries``
    sessions; 0 turns the cache off. OpenSSL's default is 20480 entries."""
    if entries < 0:
        raise ValueError("session cache size must be 0 (off) or more")
    lib = load()
    pointer = ssl_ctx_pointer(context)
    if entries == 0:
        lib.SSL_CTX_ctrl(pointer, SSL_CTRL_SET_SESS_CACHE_MODE, SSL_SESS_CACHE_OFF, None)
    else:
        lib.SSL_CTX_ctrl(pointer, SSL_CTRL_SET_SESS_CACHE_MODE, SSL_SESS_CACHE_SERVER, None)
        lib.SSL_CTX_ctrl(pointer, SSL_CTRL_SET_SESS_CACHE_SIZE, entries, None)


def session_cache_size(context: ssl.SSLContext) -> int:
    """The session cache size; 0 when the server cache is off."""
    lib = load()
    pointer = ssl_ctx_pointer(context)
    if not lib.SSL_CTX_ctrl(pointer, SSL_CTRL_GET_SESS_CACHE_MODE, 0, None) & SSL_SESS_CACHE_SERVER:
        return 0
    return int(lib.SSL_CTX_ctrl(pointer, SSL_CTRL_GET_SESS_CACHE_SIZE, 0, None))


def send_configured_chain_only(context: ssl.SSLContext) -> None:
    """Send the certificate chain as loaded, never one OpenSSL completes itself.

    A certificate loaded without its chain otherwise makes OpenSSL build one at every
    handshake, from the context's verify store (``X509_verify_cert``, ~6,000
    instructions a handshake): the store holds only a client-auth CA bundle here, so
    what it found would be that bundle's certificates, sent to every client. haproxy
    installs an empty chain for the same reason."""
    load().SSL_CTX_ctrl(ssl_ctx_pointer(context), SSL_CTRL_MODE, SSL_MODE_NO_AUTO_CHAIN, None)


def sends_configured_chain_only(context: ssl.SSLContext) -> bool:
    """Whether ``send_configured_chain_only`` applies to ``context``."""
    return bool(load().SSL_CTX_ctrl(ssl_ctx_pointer(context), SSL_CTRL_MODE, 0, None) & SSL_MODE_NO_AUTO_CHAIN)


def set_ciphersuites(context: ssl.SSLContext, suites: str) -> None:
    """The TLS 1.3 cipher suites, OpenSSL syntax (``TLS_AES_128_GCM_SHA256:...``).
    ValueError when OpenSSL accepts none of them."""
    lib = load()
    if not lib.SSL_CTX_set_ciphersuites(ssl_ctx_pointer(context), suites.encode("ascii")):
        lib.ERR_clear_error()  # leave no stale error for the ssl module to trip on
        raise ValueError(f"no usable TLS 1.3 cipher suite in {suites!r}")


def set_groups(context: ssl.SSLContext, groups: str) -> None:
    """The key exchange groups (curves), OpenSSL syntax (``X25519:P-256:P-384``).
    ValueError when OpenSSL refuses the list (an unknown name)."""
    lib = load()
    if not lib.SSL_CTX_ctrl(ssl_ctx_pointer(context), SSL_CTRL_SET_GROUPS_LIST, 0, groups.encode("ascii")):
        lib.ERR_clear_error()
        raise ValueError(f"unknown or unsupported group in {groups!r}")
