# cython: language_level=3
"""Session-ticket key rings on an ``ssl.SSLContext``: the compiled twin.

Same interface and behaviour as ``_sslctx_py`` (read its docstring first); the
difference is where the ring lives and who runs the callback:

- the ring is C memory hung on the ``SSL_CTX`` as ex_data, freed by OpenSSL's
  ex_data free hook when the ``SSL_CTX`` is freed;
- the callback is a C function that never takes the GIL (Python's ssl module
  releases it during handshakes), so a handshake on one thread never waits for
  Python code; a small lock per context orders it against a rotation.

OpenSSL's functions are not linked at build time: their addresses come from
``_libssl`` (ctypes on the very libssl ``_ssl`` uses, checked there), so building
needs neither OpenSSL headers nor libssl-dev, and this module can only ever
call the library Python's ssl module runs on. The prototypes below are OpenSSL
3's public ABI.
"""

from cpython.pythread cimport (
    PyThread_acquire_lock,
    PyThread_allocate_lock,
    PyThread_release_lock,
    PyThread_type_lock,
    WAIT_LOCK,
)
from libc.stdlib cimport calloc, free
from libc.string cimport memcmp, memcpy

from lbcore._fastpath import _libssl
from lbcore._fastpath._sslctx_py import MAX_KEYS, check_keys

__all__ = ["IMPLEMENTATION", "install_ticket_keys", "ticket_key_names", "MAX_KEYS", "check_keys"]

IMPLEMENTATION = "compiled"

cdef extern from "pythread.h":
    # Frees a mutex; needs no GIL (Cython's pxd does not say nogil).
    void PyThread_free_lock(PyThread_type_lock) nogil

cdef enum:
    NAME_SIZE = 16
    MAX_HALF = 32
    IV_SIZE = 16  # EVP_MAX_IV_LENGTH
    CRYPTO_EX_INDEX_SSL_CTX = 1
    TLS1_3_VERSION = 0x0304
    OSSL_PARAM_UTF8_STRING = 4
    OSSL_PARAM_OCTET_STRING = 5

ctypedef struct OSSL_PARAM:
    const char *key
    unsigned int data_type
    void *data
    size_t data_size
    size_t return_size

ctypedef int (*ticket_cb_t)(void *, unsigned char *, unsigned char *, void *, void *, int) noexcept nogil
ctypedef void (*ex_free_t)(void *, void *, void *, int, long, void *) noexcept nogil
ctypedef void *(*get_ssl_ctx_t)(void *) noexcept nogil
ctypedef int (*ssl_version_t)(const void *) noexcept nogil
ctypedef void *(*get_ex_data_t)(void *, int) noexcept nogil
ctypedef int (*set_ex_data_t)(void *, int, void *) noexcept nogil
ctypedef int (*get_ex_new_index_t)(int, long, void *, void *, void *, ex_free_t) noexcept nogil
ctypedef int (*set_ticket_cb_t)(void *, ticket_cb_t) noexcept nogil
ctypedef int (*rand_bytes_t)(unsigned char *, int) noexcept nogil
ctypedef const void *(*cipher_t)() noexcept nogil
ctypedef const void *(*cipher_fetch_t)(void *, const char *, const char *) noexcept nogil
ctypedef int (*cipher_init_t)(void *, const void *, void *, const unsigned char *, const unsigned char *) noexcept nogil
ctypedef int (*mac_set_params_t)(void *, const OSSL_PARAM *) noexcept nogil

cdef get_ssl_ctx_t SSL_get_SSL_CTX
cdef ssl_version_t SSL_version
cdef get_ex_data_t SSL_CTX_get_ex_data
cdef set_ex_data_t SSL_CTX_set_ex_data
cdef get_ex_new_index_t CRYPTO_get_ex_new_index
cdef set_ticket_cb_t SSL_CTX_set_tlsext_ticket_key_evp_cb
cdef rand_bytes_t RAND_bytes
cdef cipher_t EVP_aes_128_cbc
cdef cipher_t EVP_aes_256_cbc
cdef cipher_fetch_t EVP_CIPHER_fetch
# The two ciphers as the default provider's, fetched once: a cipher init given the
# built-in EVP_aes_*_cbc() fetches the provider's itself, on every ticket made or read.
cdef const void *aes_128_cbc = NULL
cdef const void *aes_256_cbc = NULL
cdef cipher_init_t EVP_EncryptInit_ex
cdef cipher_init_t EVP_DecryptInit_ex
cdef mac_set_params_t EVP_MAC_CTX_set_params
cdef int ex_index = -1

cdef struct Key:
    unsigned char name[NAME_SIZE]
    unsigned char hmac[MAX_HALF]
    unsigned char aes[MAX_HALF]
    size_t half  # 32 (AES-256, 80-byte key) or 16 (AES-128, 48-byte key)

cdef struct Ring:
    int count
    Key *keys  # count keys, newest last

cdef struct CtxData:
    PyThread_type_lock lock
    Ring ring

cdef const char *DIGEST = b"SHA256"


cdef size_t _address(lib, str name) except 0:
    return _libssl.symbol_address(lib, name)


cdef void _free_ctx_data(void *parent, void *ptr, void *ad, int idx, long argl, void *argp) noexcept nogil:
    # ex_data free hook: the SSL_CTX is being freed, nothing can use its ring now.
    cdef CtxData *data = <CtxData *>ptr
    if data == NULL:
        return
    free(data.ring.keys)
    if data.lock != NULL:
        PyThread_free_lock(data.lock)
    free(data)


cdef int _bind() except -1:
    global SSL_get_SSL_CTX, SSL_version, SSL_CTX_get_ex_data, SSL_CTX_set_ex_data, CRYPTO_get_ex_new_index
    global SSL_CTX_set_tlsext_ticket_key_evp_cb, RAND_bytes, EVP_aes_128_cbc, EVP_aes_256_cbc
    global EVP_EncryptInit_ex, EVP_DecryptInit_ex, EVP_MAC_CTX_set_params, ex_index
    global EVP_CIPHER_fetch, aes_128_cbc, aes_256_cbc
    if ex_index >= 0:
        return 0
    lib = _libssl.load()
    SSL_get_SSL_CTX = <get_ssl_ctx_t><void *>_address(lib, "SSL_get_SSL_CTX")
    SSL_version = <ssl_version_t><void *>_address(lib, "SSL_version")
    SSL_CTX_get_ex_data = <get_ex_data_t><void *>_address(lib, "SSL_CTX_get_ex_data")
    SSL_CTX_set_ex_data = <set_ex_data_t><void *>_address(lib, "SSL_CTX_set_ex_data")
    CRYPTO_get_ex_new_index = <get_ex_new_index_t><void *>_address(lib, "CRYPTO_get_ex_new_index")
    SSL_CTX_set_tlsext_ticket_key_evp_cb = <set_ticket_cb_t><void *>_address(lib, "SSL_CTX_set_tlsext_ticket_key_evp_cb")
    RAND_bytes = <rand_bytes_t><void *>_address(lib, "RAND_bytes")
    EVP_aes_128_cbc = <cipher_t><void *>_address(lib, "EVP_aes_128_cbc")
    EVP_aes_256_cbc = <cipher_t><void *>_address(lib, "EVP_aes_256_cbc")
    EVP_CIPHER_fetch = <cipher_fetch_t><void *>_address(lib, "EVP_CIPHER_fetch")
    # Kept for the process's life (never freed: a handshake may be using them). Should a
    # fetch fail, the built-in cipher serves, as before (_cipher).
    aes_128_cbc = EVP_CIPHER_fetch(NULL, b"AES-128-CBC", NULL)
    aes_256_cbc = EVP_CIPHER_fetch(NULL, b"AES-256-CBC", NULL)
    EVP_EncryptInit_ex = <cipher_init_t><void *>_address(lib, "EVP_EncryptInit_ex")
    EVP_DecryptInit_ex = <cipher_init_t><void *>_address(lib, "EVP_DecryptInit_ex")
    EVP_MAC_CTX_set_params = <mac_set_params_t><void *>_address(lib, "EVP_MAC_CTX_set_params")
    index = CRYPTO_get_ex_new_index(CRYPTO_EX_INDEX_SSL_CTX, 0, NULL, NULL, NULL, _free_ctx_data)
    if index < 0:
        raise _libssl.OpenSSLUnavailable("CRYPTO_get_ex_new_index failed")
    ex_index = index
    return 0


cdef int _set_mac(void *mac_ctx, Key *key) noexcept nogil:
    cdef OSSL_PARAM params[3]
    params[0].key = b"key"
    params[0].data_type = OSSL_PARAM_OCTET_STRING
    params[0].data = key.hmac
    params[0].data_size = key.half
    params[0].return_size = <size_t>-1
    params[1].key = b"digest"
    params[1].data_type = OSSL_PARAM_UTF8_STRING
    params[1].data = <void *>DIGEST
    params[1].data_size = 6
    params[1].return_size = <size_t>-1
    params[2].key = NULL
    params[2].data_type = 0
    params[2].data = NULL
    params[2].data_size = 0
    params[2].return_size = 0
    return EVP_MAC_CTX_set_params(mac_ctx, params)


cdef const void *_cipher(Key *key) noexcept nogil:
    if key.half == 32:
        return aes_256_cbc if aes_256_cbc != NULL else EVP_aes_256_cbc()
    return aes_128_cbc if aes_128_cbc != NULL else EVP_aes_128_cbc()


cdef int _ticket_key_cb(void *ssl, unsigned char *name, unsigned char *iv, void *cipher_ctx,
                        void *mac_ctx, int enc) noexcept nogil:
    cdef CtxData *data = <CtxData *>SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ex_index)
    cdef Key *key = NULL
    cdef int i, result
    if data == NULL or data.ring.count == 0:
        return 0  # no ring on this context: no ticket / full handshake
    PyThread_acquire_lock(data.lock, WAIT_LOCK)
    if enc:
        key = &data.ring.keys[data.ring.count - 1]
        if RAND_bytes(iv, IV_SIZE) <= 0:
            result = -1
        else:
            memcpy(name, key.name, NAME_SIZE)
            if not EVP_EncryptInit_ex(cipher_ctx, _cipher(key), NULL, key.aes, iv) or not _set_mac(mac_ctx, key):
                result = -1
            else:
                result = 1
    else:
        result = 0
        for i in range(data.ring.count):
            if memcmp(data.ring.keys[i].name, name, NAME_SIZE) == 0:
                key = &data.ring.keys[i]
                if not _set_mac(mac_ctx, key) or not EVP_DecryptInit_ex(cipher_ctx, _cipher(key), NULL, key.aes, iv):
                    result = -1
                else:
                    # 2: renew (a new ticket under the newest key). Under an older key,
                    # and always in TLS 1.3, where a client uses a ticket once: without a
                    # new ticket on a resumed handshake its next one is full (as nginx).
                    result = 1 if i == data.ring.count - 1 and SSL_version(ssl) != TLS1_3_VERSION else 2
                break
    PyThread_release_lock(data.lock)
    return result


cdef size_t _pointer(context) except 0:
    return <size_t>_libssl.ssl_ctx_pointer(context)


def install_ticket_keys(context, keys):
    """Use ``keys`` (newest last) for this context's session tickets, replacing any
    ring installed before. Raises ValueError for bad keys, OpenSSLUnavailable when
    libssl cannot be reached."""
    cdef void *ctx
    cdef CtxData *data
    cdef Key *fresh
    cdef Key *old
    cdef int i
    cdef bytes raw
    check_keys(keys)
    _bind()
    ctx = <void *>_pointer(context)
    data = <CtxData *>SSL_CTX_get_ex_data(ctx, ex_index)
    fresh = <Key *>calloc(len(keys), sizeof(Key))
    if fresh == NULL:
        raise MemoryError()
    for i in range(len(keys)):
        raw = bytes(keys[i])
        fresh[i].half = 32 if len(raw) == 80 else 16
        memcpy(fresh[i].name, <const char *>raw, NAME_SIZE)
        memcpy(fresh[i].hmac, (<const char *>raw) + NAME_SIZE, fresh[i].half)
        memcpy(fresh[i].aes, (<const char *>raw) + NAME_SIZE + fresh[i].half, fresh[i].half)
    if data == NULL:
        data = <CtxData *>calloc(1, sizeof(CtxData))
        if data == NULL:
            free(fresh)
            raise MemoryError()
        data.lock = PyThread_allocate_lock()
        if data.lock == NULL or not SSL_CTX_set_ex_data(ctx, ex_index, data):
            _free_ctx_data(NULL, data, NULL, 0, 0, NULL)
            free(fresh)
            raise _libssl.OpenSSLUnavailable("cannot attach the ticket key ring to the SSL_CTX")
    with nogil:
        PyThread_acquire_lock(data.lock, WAIT_LOCK)
    old = data.ring.keys
    data.ring.keys = fresh
    data.ring.count = len(keys)
    PyThread_release_lock(data.lock)
    free(old)
    if not SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, _ticket_key_cb):
        raise _libssl.OpenSSLUnavailable("SSL_CTX_set_tlsext_ticket_key_evp_cb failed")


def ticket_key_names(context):
    """The names (first 16 bytes) of the installed keys, oldest first; () if none."""
    cdef CtxData *data
    cdef int i
    _bind()
    data = <CtxData *>SSL_CTX_get_ex_data(<void *>_pointer(context), ex_index)
    if data == NULL:
        return ()
    names = []
    for i in range(data.ring.count):
        names.append((<char *>data.ring.keys[i].name)[:NAME_SIZE])
    return tuple(names)
