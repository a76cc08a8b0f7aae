"""Session-ticket key rings on an ``ssl.SSLContext``: the pure-Python (ctypes) twin.

Theory of operation: OpenSSL encrypts and decrypts session tickets through a
callback set with ``SSL_CTX_set_tlsext_ticket_key_evp_cb``. On encryption it asks
for a key name (16 bytes, written into the ticket), an IV, an initialised
AES-CBC cipher context and HMAC-SHA256 parameters; on decryption it passes the
name read from the ticket and expects the same set up with that key, or 0 for
"unknown key: do a full handshake". The callback here serves a ring of keys:
the newest (last) encrypts, every key decrypts, and a ticket decrypted with an
older key is answered with 2, which makes OpenSSL issue a fresh ticket under the
newest key. Installing a new ring on a context replaces the old one at once.

The ring is looked up by the ``SSL_CTX`` the connection is on (``SSL_get_SSL_CTX``),
which, after an SNI switch (``ssl_object.context = other``), is the switched-to
context; so every context of one listener must carry the same ring (the policy
module installs it on all of them). The compiled twin (``_sslctx.pyx``) does
exactly the same with C storage and no GIL.

A key is 80 bytes (16 name, 32 HMAC, 32 AES-256) or 48 bytes (16 name, 16 HMAC,
16 AES-128), as in haproxy's ``tls-ticket-keys`` file.
"""

from __future__ import annotations

import ctypes
import ssl
import weakref
from typing import Any, Sequence

from lbcore._fastpath import _libssl
from lbcore._fastpath._libssl import (
    EVP_MAX_IV_LENGTH,
    OSSL_PARAM,
    OSSL_PARAM_OCTET_STRING,
    OSSL_PARAM_UNMODIFIED,
    OSSL_PARAM_UTF8_STRING,
    TLS1_3_VERSION,
)

__all__ = ["IMPLEMENTATION", "install_ticket_keys", "ticket_key_names", "MAX_KEYS", "check_keys"]

IMPLEMENTATION = "pure"
MAX_KEYS = 64  # keys in one ring; a file that grows past this should drop old keys
NAME_SIZE = 16
KEY_SIZES = {80: 32, 48: 16}  # whole key -> size of its HMAC and AES parts
_DIGEST = b"SHA256"


def check_keys(keys: Sequence[bytes]) -> None:
    """ValueError unless ``keys`` is 1..MAX_KEYS keys of 48 or 80 bytes with distinct
    names. The message never shows key bytes."""
    if not 1 <= len(keys) <= MAX_KEYS:
        raise ValueError(f"a ticket key ring holds 1 to {MAX_KEYS} keys, got {len(keys)}")
    names = set()
    for index, key in enumerate(keys):
        if not isinstance(key, (bytes, bytearray)) or len(key) not in KEY_SIZES:
            size = len(key) if isinstance(key, (bytes, bytearray)) else type(key).__name__
            raise ValueError(f"ticket key {index + 1} must be 48 or 80 bytes, got {size}")
        name = bytes(key[:NAME_SIZE])
        if name in names:
            raise ValueError(f"ticket key {index + 1} has the same name (first 16 bytes) as an earlier key")
        names.add(name)


class _Key:
    """One key with the ctypes buffers and OSSL_PARAM array its callback calls use."""

    __slots__ = ("name", "cipher", "aes", "hmac", "params", "_digest")

    def __init__(self, lib: Any, raw: bytes) -> None:
        half = KEY_SIZES[len(raw)]
        self.name = bytes(raw[:NAME_SIZE])
        self.hmac = ctypes.create_string_buffer(bytes(raw[NAME_SIZE:NAME_SIZE + half]), half)
        self.aes = ctypes.create_string_buffer(bytes(raw[NAME_SIZE + half:]), half)
        self.cipher = lib.EVP_aes_256_cbc() if half == 32 else lib.EVP_aes_128_cbc()
        self._digest = ctypes.create_string_buffer(_DIGEST)
        params = (OSSL_PARAM * 3)()
        params[0] = OSSL_PARAM(b"key", OSSL_PARAM_OCTET_STRING, ctypes.cast(self.hmac, ctypes.c_void_p), half, OSSL_PARAM_UNMODIFIED)
        params[1] = OSSL_PARAM(b"digest", OSSL_PARAM_UTF8_STRING, ctypes.cast(self._digest, ctypes.c_void_p), len(_DIGEST), OSSL_PARAM_UNMODIFIED)
        params[2] = OSSL_PARAM(None, 0, None, 0, 0)
        self.params = params

    def __repr__(self) -> str:
        return f"<ticket key {self.name.hex()}>"


class _Ring:
    __slots__ = ("keys", "by_name", "newest")

    def __init__(self, lib: Any, raw_keys: Sequence[bytes]) -> None:
        self.keys = tuple(_Key(lib, bytes(raw)) for raw in raw_keys)
        self.by_name = {key.name: key for key in self.keys}
        self.newest = self.keys[-1]


# SSL_CTX* -> ring. Entries leave when their SSLContext is collected (weakref.finalize
# runs before the SSL_CTX is freed, so an address is never reused while mapped).
_rings: dict[int, _Ring] = {}


def _ticket_key_cb(ssl_ptr: int, name: Any, iv: Any, cipher_ctx: int, mac_ctx: int, enc: int) -> int:
    # Called by OpenSSL (ctypes takes the GIL). Must not raise: -1 is an error.
    try:
        lib = _libssl.load()
        ring = _rings.get(lib.SSL_get_SSL_CTX(ssl_ptr) or 0)
        if ring is None:
            return 0  # no ring on this context: no ticket / full handshake
        if enc:
            key = ring.newest
            if lib.RAND_bytes(iv, EVP_MAX_IV_LENGTH) <= 0:
                return -1
            ctypes.memmove(name, key.name, NAME_SIZE)
            if not lib.EVP_EncryptInit_ex(cipher_ctx, key.cipher, None, key.aes, iv):
                return -1
            if not lib.EVP_MAC_CTX_set_params(mac_ctx, key.params):
                return -1
            return 1
        key = ring.by_name.get(ctypes.string_at(name, NAME_SIZE))
        if key is None:
            return 0
        if not lib.EVP_MAC_CTX_set_params(mac_ctx, key.params):
            return -1
        if not lib.EVP_DecryptInit_ex(cipher_ctx, key.cipher, None, key.aes, iv):
            return -1
        # 2: renew (a new ticket under the newest key). Under an older key, and always
        # in TLS 1.3, where a client uses a ticket once: without a new ticket on a
        # resumed handshake its next one is full (as nginx).
        return 1 if key is ring.newest and lib.SSL_version(ssl_ptr) != TLS1_3_VERSION else 2
    except BaseException:  # noqa: BLE001 - an exception cannot cross into OpenSSL
        return -1


_CALLBACK = _libssl.TICKET_KEY_CB(_ticket_key_cb)
_CALLBACK_ADDRESS = ctypes.cast(_CALLBACK, ctypes.c_void_p).value


def install_ticket_keys(context: ssl.SSLContext, keys: Sequence[bytes]) -> None:
    """Use ``keys`` (newest last) for this context's session tickets, replacing any
    ring installed before. Raises ValueError for bad keys, OpenSSLUnavailable when
    libssl cannot be reached."""
    check_keys(keys)
    lib = _libssl.load()
    pointer = _libssl.ssl_ctx_pointer(context)
    ring = _Ring(lib, keys)
    first = pointer not in _rings
    _rings[pointer] = ring
    if first:
        weakref.finalize(context, _rings.pop, pointer, None)
    if not lib.SSL_CTX_set_tlsext_ticket_key_evp_cb(pointer, _CALLBACK_ADDRESS):
        del _rings[pointer]
        raise _libssl.OpenSSLUnavailable("SSL_CTX_set_tlsext_ticket_key_evp_cb failed")


def ticket_key_names(context: ssl.SSLContext) -> tuple[bytes, ...]:
    """The names (first 16 bytes) of the installed keys, oldest first; () if none."""
    ring = _rings.get(_libssl.ssl_ctx_pointer(context))
    return tuple(key.name for key in ring.keys) if ring else ()
