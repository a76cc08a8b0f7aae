# cython: language_level=3
"""Server-side TLS over a plain TCP transport: the compiled twin.

Same interface and behaviour as ``_tlsconn_py`` (read its docstring first). The
difference is how OpenSSL is driven: an ``SSL *`` made from the context's
``SSL_CTX`` with two memory BIOs, called directly (no ``ssl.SSLObject``, no
exception per "want more data"), and the SNI choice made by a C servername
callback that asks ``lookup`` and switches the ``SSL_CTX`` (``SSL_set_SSL_CTX``,
what ``SSLObject.context = ...`` does).

OpenSSL's functions are not linked at build time: their addresses come from
``_libssl`` (the very libssl Python's ``_ssl`` uses, checked there), as in
``_sslctx``. The prototypes below are OpenSSL 3's public ABI.

The servername callback is installed on every context of the listener before
each handshake step of a connection (a pointer store each): Python's own SNI
callback, should anything set ``sni_callback`` on a context meanwhile, must never
run for an ``SSL`` made here (it would take this object for one of its own). An
``SSL`` not made here (no entry at this module's ex_data index) is left alone.
"""

import logging

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.errno cimport EINTR, errno
from libc.string cimport strlen

cdef extern from "<sys/socket.h>" nogil:
    ssize_t send(int sockfd, const void *buf, size_t len, int flags)
    int MSG_DONTWAIT, MSG_NOSIGNAL

from lbcore._fastpath import _libssl
from lbcore._fastpath._clock cimport Clock
from lbcore._fastpath._tlsconn_py import check_contexts

__all__ = ["IMPLEMENTATION", "READ_BATCH", "SHUTDOWN_TIMEOUT", "TlsConnection", "TlsServer"]

IMPLEMENTATION = "compiled"
READ_BATCH = 65536
SHUTDOWN_TIMEOUT = 5.0

log = logging.getLogger("lbcore.tls")

# The SNI names a server remembers its choice for (the names its clients send, and
# whatever else they send: cleared when full, so an unbounded set of names costs a
# lookup each, never memory).
SNI_CHOICES = 256
# A deadline this close is taken as come: a loop timer may go off up to a millisecond
# before the time it was set for, by this clock (uvloop counts whole milliseconds, from
# the time it cached at its iteration's start).
cdef double SLACK = 0.001

cdef Clock _clock = Clock()

cdef enum:
    HANDSHAKE = 0
    OPEN = 1
    SHUTDOWN = 2
    CLOSED = 3
    BATCH = 65536
    SSL_ERROR_WANT_READ = 2
    SSL_ERROR_ZERO_RETURN = 6
    BIO_CTRL_PENDING = 10
    SSL_CTRL_SET_TLSEXT_SERVERNAME_CB = 53
    SSL_CTRL_MODE = 33
    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER = 2
    CRYPTO_EX_INDEX_SSL = 0
    TLSEXT_NAMETYPE_host_name = 0
    SSL_TLSEXT_ERR_OK = 0
    SSL_TLSEXT_ERR_ALERT_FATAL = 2
    SSL_TLSEXT_ERR_NOACK = 3
    SSL_AD_HANDSHAKE_FAILURE = 40
    SSL_AD_INTERNAL_ERROR = 80

ctypedef void *(*ssl_new_t)(void *) noexcept nogil
ctypedef void (*ssl_free_t)(void *) noexcept nogil
ctypedef const void *(*bio_s_mem_t)() noexcept nogil
ctypedef void *(*bio_new_t)(const void *) noexcept nogil
ctypedef int (*bio_free_t)(void *) noexcept nogil
ctypedef void (*ssl_set_bio_t)(void *, void *, void *) noexcept nogil
ctypedef void (*ssl_void_t)(void *) noexcept nogil
ctypedef int (*ssl_int_t)(void *) noexcept nogil
ctypedef int (*ssl_const_int_t)(const void *) noexcept nogil
ctypedef int (*ssl_rw_ex_t)(void *, void *, size_t, size_t *) noexcept nogil
ctypedef int (*ssl_get_error_t)(const void *, int) noexcept nogil
ctypedef int (*bio_rw_t)(void *, void *, int) noexcept nogil
ctypedef long (*bio_ctrl_t)(void *, int, long, void *) noexcept nogil
ctypedef long (*ssl_ctrl_t)(void *, int, long, void *) noexcept nogil
ctypedef long (*ctx_callback_ctrl_t)(void *, int, void *) noexcept nogil
ctypedef const char *(*get_servername_t)(const void *, int) noexcept nogil
ctypedef void *(*set_ssl_ctx_t)(void *, void *) noexcept nogil
ctypedef int (*set_ex_data_t)(void *, int, void *) noexcept nogil
ctypedef void *(*get_ex_data_t)(const void *, int) noexcept nogil
ctypedef int (*get_ex_new_index_t)(int, long, void *, void *, void *, void *) noexcept nogil
ctypedef const char *(*ssl_string_t)(const void *) noexcept nogil
ctypedef const void *(*get_cipher_t)(const void *) noexcept nogil
ctypedef int (*cipher_bits_t)(const void *, int *) noexcept nogil
ctypedef void *(*get_peer_t)(const void *) noexcept nogil
ctypedef int (*i2d_x509_t)(void *, unsigned char **) noexcept nogil
ctypedef void (*x509_free_t)(void *) noexcept nogil
ctypedef void (*alpn_t)(const void *, const unsigned char **, unsigned int *) noexcept nogil
ctypedef unsigned long (*err_get_t)() noexcept nogil
ctypedef void (*err_string_t)(unsigned long, char *, size_t) noexcept nogil
ctypedef void (*err_clear_t)() noexcept nogil

cdef ssl_new_t SSL_new
cdef ssl_free_t SSL_free
cdef bio_s_mem_t BIO_s_mem
cdef bio_new_t BIO_new
cdef bio_free_t BIO_free
cdef ssl_set_bio_t SSL_set_bio
cdef ssl_void_t SSL_set_accept_state
cdef ssl_int_t SSL_do_handshake
cdef ssl_int_t SSL_shutdown
cdef ssl_const_int_t SSL_session_reused
cdef ssl_const_int_t SSL_has_pending
cdef ssl_rw_ex_t SSL_read_ex
cdef ssl_rw_ex_t SSL_write_ex
cdef ssl_get_error_t SSL_get_error
cdef bio_rw_t BIO_write
cdef bio_rw_t BIO_read
cdef bio_ctrl_t BIO_ctrl
cdef ssl_ctrl_t SSL_ctrl
cdef ctx_callback_ctrl_t SSL_CTX_callback_ctrl
cdef get_servername_t SSL_get_servername
cdef set_ssl_ctx_t SSL_set_SSL_CTX
cdef set_ex_data_t SSL_set_ex_data
cdef get_ex_data_t SSL_get_ex_data
cdef get_ex_new_index_t CRYPTO_get_ex_new_index
cdef ssl_string_t SSL_get_version
cdef get_cipher_t SSL_get_current_cipher
cdef ssl_string_t SSL_CIPHER_get_name
cdef ssl_string_t SSL_CIPHER_get_version
cdef cipher_bits_t SSL_CIPHER_get_bits
cdef get_peer_t SSL_get1_peer_certificate
cdef i2d_x509_t i2d_X509
cdef x509_free_t X509_free
cdef alpn_t SSL_get0_alpn_selected
cdef err_get_t ERR_get_error
cdef err_string_t ERR_error_string_n
cdef err_clear_t ERR_clear_error
cdef err_get_t ERR_peek_error
cdef int ex_index = -1
cdef const void *mem_method = NULL

# Plaintext is decrypted here and copied once into the bytes handed to the engine
# (one event loop per process, and the GIL held throughout: one buffer is enough).
cdef unsigned char read_buffer[BATCH]
cdef unsigned char write_buffer[BATCH]  # ciphertext on its way to a socket (_flush)


cdef size_t _address(lib, str name) except 0:
    return _libssl.symbol_address(lib, name)


cdef int _bind() except -1:
    global SSL_new, SSL_free, BIO_s_mem, BIO_new, BIO_free, SSL_set_bio, SSL_set_accept_state, SSL_do_handshake
    global SSL_shutdown, SSL_session_reused, SSL_has_pending, SSL_read_ex, SSL_write_ex, SSL_get_error, BIO_write, BIO_read
    global BIO_ctrl, SSL_ctrl, SSL_CTX_callback_ctrl, SSL_get_servername, SSL_set_SSL_CTX
    global SSL_set_ex_data, SSL_get_ex_data, CRYPTO_get_ex_new_index, SSL_get_version, SSL_get_current_cipher
    global SSL_CIPHER_get_name, SSL_CIPHER_get_version, SSL_CIPHER_get_bits, SSL_get1_peer_certificate
    global i2d_X509, X509_free, SSL_get0_alpn_selected, ERR_get_error, ERR_error_string_n, ERR_clear_error, ERR_peek_error
    global ex_index, mem_method
    if ex_index >= 0:
        return 0
    lib = _libssl.load()
    SSL_new = <ssl_new_t><void *>_address(lib, "SSL_new")
    SSL_free = <ssl_free_t><void *>_address(lib, "SSL_free")
    BIO_s_mem = <bio_s_mem_t><void *>_address(lib, "BIO_s_mem")
    BIO_new = <bio_new_t><void *>_address(lib, "BIO_new")
    BIO_free = <bio_free_t><void *>_address(lib, "BIO_free")
    SSL_set_bio = <ssl_set_bio_t><void *>_address(lib, "SSL_set_bio")
    SSL_set_accept_state = <ssl_void_t><void *>_address(lib, "SSL_set_accept_state")
    SSL_do_handshake = <ssl_int_t><void *>_address(lib, "SSL_do_handshake")
    SSL_shutdown = <ssl_int_t><void *>_address(lib, "SSL_shutdown")
    SSL_session_reused = <ssl_const_int_t><void *>_address(lib, "SSL_session_reused")
    SSL_has_pending = <ssl_const_int_t><void *>_address(lib, "SSL_has_pending")
    SSL_read_ex = <ssl_rw_ex_t><void *>_address(lib, "SSL_read_ex")
    SSL_write_ex = <ssl_rw_ex_t><void *>_address(lib, "SSL_write_ex")
    SSL_get_error = <ssl_get_error_t><void *>_address(lib, "SSL_get_error")
    BIO_write = <bio_rw_t><void *>_address(lib, "BIO_write")
    BIO_read = <bio_rw_t><void *>_address(lib, "BIO_read")
    BIO_ctrl = <bio_ctrl_t><void *>_address(lib, "BIO_ctrl")
    SSL_ctrl = <ssl_ctrl_t><void *>_address(lib, "SSL_ctrl")
    SSL_CTX_callback_ctrl = <ctx_callback_ctrl_t><void *>_address(lib, "SSL_CTX_callback_ctrl")
    SSL_get_servername = <get_servername_t><void *>_address(lib, "SSL_get_servername")
    SSL_set_SSL_CTX = <set_ssl_ctx_t><void *>_address(lib, "SSL_set_SSL_CTX")
    SSL_set_ex_data = <set_ex_data_t><void *>_address(lib, "SSL_set_ex_data")
    SSL_get_ex_data = <get_ex_data_t><void *>_address(lib, "SSL_get_ex_data")
    CRYPTO_get_ex_new_index = <get_ex_new_index_t><void *>_address(lib, "CRYPTO_get_ex_new_index")
    SSL_get_version = <ssl_string_t><void *>_address(lib, "SSL_get_version")
    SSL_get_current_cipher = <get_cipher_t><void *>_address(lib, "SSL_get_current_cipher")
    SSL_CIPHER_get_name = <ssl_string_t><void *>_address(lib, "SSL_CIPHER_get_name")
    SSL_CIPHER_get_version = <ssl_string_t><void *>_address(lib, "SSL_CIPHER_get_version")
    SSL_CIPHER_get_bits = <cipher_bits_t><void *>_address(lib, "SSL_CIPHER_get_bits")
    SSL_get1_peer_certificate = <get_peer_t><void *>_address(lib, "SSL_get1_peer_certificate")
    i2d_X509 = <i2d_x509_t><void *>_address(lib, "i2d_X509")
    X509_free = <x509_free_t><void *>_address(lib, "X509_free")
    SSL_get0_alpn_selected = <alpn_t><void *>_address(lib, "SSL_get0_alpn_selected")
    ERR_get_error = <err_get_t><void *>_address(lib, "ERR_get_error")
    ERR_error_string_n = <err_string_t><void *>_address(lib, "ERR_error_string_n")
    ERR_clear_error = <err_clear_t><void *>_address(lib, "ERR_clear_error")
    ERR_peek_error = <err_get_t><void *>_address(lib, "ERR_peek_error")
    mem_method = BIO_s_mem()
    index = CRYPTO_get_ex_new_index(CRYPTO_EX_INDEX_SSL, 0, NULL, NULL, NULL, NULL)
    if index < 0 or mem_method == NULL:
        raise _libssl.OpenSSLUnavailable("CRYPTO_get_ex_new_index or BIO_s_mem failed")
    ex_index = index
    return 0


cdef inline void _clear_errors() noexcept:
    """Empty this thread's OpenSSL error queue, which SSL_get_error reads (only a call's
    own errors may be in it), when it holds an error: ERR_peek_error is the test
    SSL_get_error itself makes, and costs about half of ERR_clear_error on an empty queue
    (callgrind: ~450 against ~840 instructions, three times a proxied HTTPS request)."""
    if ERR_peek_error() != 0:
        ERR_clear_error()


cdef str _error_text(int code):
    """OpenSSL's error queue as one line (and the queue emptied)."""
    cdef char text[256]
    cdef unsigned long err
    parts = []
    while True:
        err = ERR_get_error()
        if err == 0:
            break
        ERR_error_string_n(err, text, sizeof(text))
        parts.append((<bytes>text[:strlen(text)]).decode("ascii", "replace"))
    if not parts:
        return "SSL_get_error %d" % code
    return "; ".join(parts)


cdef int _servername_cb(void *ssl, int *alert, void *arg) noexcept with gil:
    """SNI: ask the connection's server which context serves the name, switch to it."""
    cdef TlsConnection conn
    cdef TlsServer server
    cdef void *conn_pointer = SSL_get_ex_data(ssl, ex_index)
    cdef const char *raw
    if conn_pointer == NULL:
        return SSL_TLSEXT_ERR_NOACK  # not an SSL made here
    conn = <TlsConnection>conn_pointer
    server = conn.server
    raw = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name)
    key = PyBytes_FromStringAndSize(raw, strlen(raw)) if raw != NULL else None
    name = None
    # The choice for a name the server has seen comes from its dict: no decoding, no
    # call of the lookup (a Python function) per handshake. The lookup is the server's,
    # fixed for its life (a reload makes a new server), so the choice stays right.
    choice = server.sni_choices.get(key)
    try:
        if choice is None:
            # The alerts are those CPython's ssl sends in the same cases (the pure twin):
            # internal_error for a name that is not ASCII (RFC 6066: an A-label is),
            # handshake_failure when choosing the context fails.
            try:
                name = (<bytes>key).decode("ascii") if key is not None else None
            except UnicodeDecodeError:
                log.debug("TLS: SNI name refused: not ASCII")
                alert[0] = SSL_AD_INTERNAL_ERROR
                return SSL_TLSEXT_ERR_ALERT_FATAL
            index = server.lookup(name)
            server.contexts[index]  # an index out of range fails here, not remembered
            choice = (index, name.lower().rstrip(".") if name else None)
            if len(server.sni_choices) >= SNI_CHOICES:
                server.sni_choices.clear()
            server.sni_choices[key] = choice
        index, conn.lbcore_sni = choice
        context = server.contexts[index]
        if context is not conn.context:
            if SSL_set_SSL_CTX(ssl, <void *><size_t>server.pointers[index]) == NULL:
                raise RuntimeError("SSL_set_SSL_CTX failed")
            conn.context = context
    except BaseException as exc:
        if name is None and key is not None:
            name = (<bytes>key).decode("ascii", "replace")
        log.warning("TLS: choosing the certificate for SNI name %r failed: %s", name, exc)
        alert[0] = SSL_AD_HANDSHAKE_FAILURE
        return SSL_TLSEXT_ERR_ALERT_FATAL
    return SSL_TLSEXT_ERR_OK


cdef class Expiries:
    """Connections waiting for a deadline of one length, oldest (soonest) first: a
    server's handshakes (its handshake timeout) or its shutdowns (SHUTDOWN_TIMEOUT).

    The length being the same for all, a connection joins at the tail and the head is
    always the next due: joining and leaving are a few pointer stores, where a loop timer
    per connection (``call_later``, then ``cancel``) cost two Python calls, a TimerHandle
    and a libuv timer, twice per TLS connection. One loop timer serves the whole queue,
    always armed for its head: when a connection joins an unarmed queue, and when it
    goes off. A connection that leaves early does not touch it; the timer then finds
    nothing due, and re-arms itself for the new head, if any."""

    def __cinit__(self, loop, double length, int kind):
        self.loop = loop
        self.length = length
        self.kind = kind

    cdef int add(self, TlsConnection conn) except -1:
        cdef double now = _clock.now()
        if conn.expiries is not None:
            conn.expiries.remove(conn)
        conn.due = now + self.length
        conn.expiries = self
        conn.prev = self.tail
        conn.next = None
        if self.tail is None:
            self.head = conn
        else:
            self.tail.next = conn
        self.tail = conn
        if self.handle is None:
            self._arm(now)
        return 0

    cdef int _arm(self, double now) except -1:
        # For the head, which is not always the connection just added: one may join
        # while _expire runs the expiries (a shutdown that keeps draining), behind others.
        self.handle = self.loop.call_later(max(self.head.due - now, 0.0), self._expire)
        return 0

    cdef int remove(self, TlsConnection conn) except -1:
        if conn.expiries is not self:
            return 0
        if conn.prev is None:
            self.head = conn.next
        else:
            conn.prev.next = conn.next
        if conn.next is None:
            self.tail = conn.prev
        else:
            conn.next.prev = conn.prev
        conn.prev = conn.next = None
        conn.expiries = None
        return 0

    def _expire(self):
        """The loop timer: each connection whose time has come leaves and gets its expiry
        (one failing does not keep the others from theirs); then armed for the head."""
        cdef TlsConnection conn
        cdef TlsConnection last = self.tail  # one joining during this pass waits for the next
        cdef double now = _clock.now()
        self.handle = None
        while self.head is not None and self.head.due <= now + SLACK:
            conn = self.head
            self.remove(conn)
            try:
                if self.kind == HANDSHAKE:
                    conn._handshake_timeout()
                else:
                    conn._shutdown_timeout()
            except Exception:
                log.exception("TLS: a connection's timeout failed")
            if conn is last:
                break
        if self.head is not None and self.handle is None:
            self._arm(now)


cdef class TlsServer:
    """One https listener's TLS for one revision: its contexts and SNI choice (its
    fields: _tlsconn.pxd)."""

    def __init__(self, contexts, lookup, int default_index, double handshake_timeout, loop, on_failed=None,
                 direct_socket=None):
        _bind()
        self.loop = loop
        self.on_failed = on_failed
        self.direct_socket = direct_socket
        self.contexts = tuple(contexts)
        self.lookup = lookup
        self.default = self.contexts[default_index]
        self.handshake_timeout = handshake_timeout
        check_contexts(self.contexts)
        self.pointers = tuple(_libssl.ssl_ctx_pointer(context) for context in self.contexts)
        self.default_ctx = <void *><size_t>self.pointers[default_index]
        self.sni_choices = {}
        self.handshakes = Expiries(loop, handshake_timeout, HANDSHAKE)
        self.shutdowns = Expiries(loop, SHUTDOWN_TIMEOUT, SHUTDOWN)

    cdef int install_callbacks(self) except -1:
        """Our servername callback on every context: OpenSSL calls it on the switched-to
        context too (after a HelloRetryRequest), and Python's must never run for an SSL
        made here, whatever was set on a context since."""
        for pointer in self.pointers:
            SSL_CTX_callback_ctrl(<void *><size_t>pointer, SSL_CTRL_SET_TLSEXT_SERVERNAME_CB, <void *>_servername_cb)
        return 0

    cpdef TlsConnection connection(self, app):
        """The protocol for the loop's next accepted TCP connection, carrying ``app``
        (made without the type call's argument parsing)."""
        cdef TlsConnection conn = TlsConnection.__new__(TlsConnection)
        conn._setup(self, app)
        return conn


cdef class TlsConnection:
    """Protocol of the TCP transport below, transport of the engine's protocol above
    (its fields: _tlsconn.pxd)."""

    def __cinit__(self):
        self.fd = -1

    def __init__(self, TlsServer server, app):
        self._setup(server, app)

    cdef int _setup(self, TlsServer server, app) except -1:
        self.server = server
        self._bind(app)
        self.state = HANDSHAKE
        self.reading = True
        self.context = server.default
        return 0

    def __dealloc__(self):
        if self.ssl != NULL:
            SSL_free(self.ssl)  # and its BIOs
            self.ssl = NULL

    # -- protocol of the TCP transport ---------------------------------------------
    cpdef connection_made(self, transport):
        self.tcp = transport
        if type(transport) is Stream:
            self.stream = transport  # sends at once itself: no direct socket needed
        elif self.server.direct_socket is not None:
            sock = self.server.direct_socket(transport)
            if sock is not None:
                self.sock = sock
                self.fd = sock.fileno()
        ssl_ = SSL_new(self.server.default_ctx)
        if ssl_ == NULL:
            log.error("TLS: SSL_new failed: %s", _error_text(0))
            transport.abort()
            self.state = CLOSED
            return
        self.ssl = ssl_
        self.rbio = BIO_new(mem_method)
        self.wbio = BIO_new(mem_method)
        if self.rbio == NULL or self.wbio == NULL:
            log.error("TLS: BIO_new failed: %s", _error_text(0))
            for bio in (<size_t>self.rbio, <size_t>self.wbio):
                if bio:
                    BIO_free(<void *>bio)  # not the SSL's yet
            self.rbio = self.wbio = NULL
            transport.abort()
            self.state = CLOSED
            return
        SSL_set_bio(ssl_, self.rbio, self.wbio)
        SSL_ctrl(ssl_, SSL_CTRL_MODE, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER, NULL)
        SSL_set_ex_data(ssl_, ex_index, <void *>self)
        SSL_set_accept_state(ssl_)
        self.server.handshakes.add(self)

    cdef int _bind(self, app) except -1:
        """``app`` above this connection: a compiled protocol is called in C, any other
        by its data_received, bound once (as a stream does)."""
        self.app = app
        self.typed_app = as_stream_protocol(app)
        self.on_data = app.data_received if app is not None and self.typed_app is None else None
        return 0

    cpdef data_received(self, data):
        cdef Py_ssize_t size
        if self.state == CLOSED or self.ssl == NULL:
            return
        if type(data) is not bytes:
            data = bytes(data)
        size = PyBytes_GET_SIZE(data)
        if size and BIO_write(self.rbio, <void *>PyBytes_AS_STRING(data), <int>size) != size:
            self._fail("BIO_write failed")
            return
        if self.state == HANDSHAKE:
            self._handshake()
        elif self.state == OPEN:
            self._read()
        elif self.state == SHUTDOWN:
            self._read_shutdown()

    def eof_received(self):
        self.tcp_eof = True
        if self.state == OPEN:
            self.eof_seen = True
            self._read()  # what came with the FIN, then the EOF (once reading and drained)
            return True  # the transport stays open for our writes; close() ends it
        return False

    cpdef connection_lost(self, exc):
        self.state = CLOSED
        self.fd = -1
        self._cancel_timer()
        app = self.app
        if self.app_made:
            self.app_made = False
            if self.typed_app is not None:
                self.typed_app.connection_lost(exc)  # a compiled protocol: a C call
            else:
                app.connection_lost(exc)
        elif not self.handshaken and self.server.on_failed is not None:
            self.server.on_failed()
        self._bind(None)

    def pause_writing(self):
        if self.app_made:
            self.app.pause_writing()

    def resume_writing(self):
        if self.app_made:
            self.app.resume_writing()

    # -- transport of the engine's protocol ---------------------------------------------
    cpdef write(self, data):
        if self._encrypt(data):
            self._flush()

    cpdef write_last(self, data):
        """The connection's last bytes, then close(): their records and the close_notify
        go to the socket in one write, not two."""
        if self._encrypt(data):
            self.close()

    cdef bint _encrypt(self, data) except -1:
        """``data`` as records into the output BIO, unsent; false if nothing is to be sent."""
        cdef size_t written = 0
        cdef Py_ssize_t size
        if self.state != OPEN:
            return False
        if type(data) is not bytes:
            data = bytes(data)
        size = PyBytes_GET_SIZE(data)
        if size == 0:
            return True
        _clear_errors()  # SSL_get_error reads this thread's queue: only this call's errors in it
        if SSL_write_ex(self.ssl, <void *>PyBytes_AS_STRING(data), <size_t>size, &written) != 1:
            self._fail(_error_text(SSL_get_error(self.ssl, 0)))
            return False
        return True

    def writelines(self, chunks):
        self.write(b"".join(chunks))

    cpdef close(self):
        cdef Stream stream = self.stream
        if self.state == OPEN:
            self.state = SHUTDOWN
            _clear_errors()
            SSL_shutdown(self.ssl)  # our close_notify; the client's is not awaited here
            _clear_errors()
            self._flush()
            self._cancel_timer()
            if self.tcp_eof:  # the client's side is shut already: nothing to wait for
                self.fd = -1  # the transport's descriptor may be closed, and reused, from here on
                if stream is not None:
                    stream.close()  # a stream is called in C here
                else:
                    self.tcp.close()
                return
            if stream is not None:
                stream.write_eof()
            elif self.tcp.can_write_eof():
                self.tcp.write_eof()
            if not self.reading:  # the engine had paused: the client's end must be read now
                self.tcp.resume_reading()
            self.shutdown_buffered = self.get_write_buffer_size()
            self.server.shutdowns.add(self)
        elif self.state == HANDSHAKE:
            self.abort()

    def _shutdown_timeout(self):
        """The client has not closed its side: abort, unless the response is still
        draining to it (a slow reader), as long as it keeps draining."""
        self._cancel_timer()
        buffered = self.tcp.get_write_buffer_size() if self.tcp is not None else 0
        if self.state == SHUTDOWN and 0 < buffered < self.shutdown_buffered:
            self.shutdown_buffered = buffered
            self.server.shutdowns.add(self)
            return
        self.abort()

    def abort(self):
        if self.state != CLOSED:
            self.state = CLOSED
            self._cancel_timer()
            if self.tcp is not None:
                self.fd = -1  # the transport's descriptor may be closed, and reused, from here on
                self.tcp.abort()

    def is_closing(self):
        return self.state != OPEN or self.tcp.is_closing()

    def get_extra_info(self, name, default=None):
        if name == "ssl_object":
            return self
        if name == "sslcontext":
            return self.context
        if name == "socket" and self.sock is not None:
            return self.sock
        return self.tcp.get_extra_info(name, default) if self.tcp is not None else default

    def pause_reading(self):
        if self.reading:
            self.reading = False
            self.tcp.pause_reading()

    def resume_reading(self):
        if not self.reading:
            self.reading = True
            self.tcp.resume_reading()
            if self.state == OPEN:
                self.server.loop.call_soon(self._read_soon)  # what was decrypted and held back

    def is_reading(self):
        return self.reading

    cpdef Py_ssize_t get_write_buffer_size(self):
        if self.stream is not None:
            return self.stream.get_write_buffer_size()  # a C call
        return self.tcp.get_write_buffer_size()

    def get_write_buffer_limits(self):
        return self.tcp.get_write_buffer_limits()

    def set_write_buffer_limits(self, high=None, low=None):
        self.tcp.set_write_buffer_limits(high, low)

    def can_write_eof(self):
        return False  # TLS has no half-close

    def write_eof(self):
        raise NotImplementedError("TLS connections cannot half-close")

    def get_protocol(self):
        return self.app

    def set_protocol(self, protocol):
        self._bind(protocol)

    # -- ssl_object ---------------------------------------------------------------------
    @property
    def session_reused(self):
        return self.resumed()

    cpdef bint resumed(self):
        """``session_reused``, as a method: called in C by the compiled engine."""
        return self.ssl != NULL and SSL_session_reused(self.ssl) == 1

    def version(self):
        if self.ssl == NULL:
            return None
        raw = SSL_get_version(self.ssl)
        return (<bytes>raw[:strlen(raw)]).decode("ascii")

    def cipher(self):
        cdef const void *cipher
        if self.ssl == NULL:
            return None
        cipher = SSL_get_current_cipher(self.ssl)
        if cipher == NULL:
            return None
        name = SSL_CIPHER_get_name(cipher)
        version = SSL_CIPHER_get_version(cipher)
        return ((<bytes>name[:strlen(name)]).decode("ascii"), (<bytes>version[:strlen(version)]).decode("ascii"),
                SSL_CIPHER_get_bits(cipher, NULL))

    def selected_alpn_protocol(self):
        cdef const unsigned char *data = NULL
        cdef unsigned int size = 0
        if self.ssl == NULL:
            return None
        SSL_get0_alpn_selected(self.ssl, &data, &size)
        if data == NULL or size == 0:
            return None
        return (<bytes>(<const char *>data)[:size]).decode("ascii")

    def getpeercert(self, binary_form=False):
        cdef void *cert
        cdef unsigned char *out = NULL
        cdef unsigned char *cursor
        cdef int size
        if not binary_form:
            raise ValueError("only getpeercert(binary_form=True) is supported")
        if self.ssl == NULL or self.state == HANDSHAKE:
            return None
        cert = SSL_get1_peer_certificate(self.ssl)
        if cert == NULL:
            return None
        try:
            size = i2d_X509(cert, NULL)
            if size <= 0:
                return None
            result = PyBytes_FromStringAndSize(NULL, size)
            cursor = <unsigned char *>PyBytes_AS_STRING(result)
            if i2d_X509(cert, &cursor) != size:
                return None
            return result
        finally:
            X509_free(cert)

    # -- inside -------------------------------------------------------------------------
    cdef int _handshake(self) except -1:
        cdef int result, code
        self.server.install_callbacks()
        _clear_errors()
        result = SSL_do_handshake(self.ssl)
        if result != 1:
            code = SSL_get_error(self.ssl, result)
            if code == SSL_ERROR_WANT_READ:
                self._flush()
                return 0
            self._fail(_error_text(code))
            return 0
        self._flush()  # the server's Finished and session tickets
        self.state = OPEN
        self._cancel_timer()
        self.handshaken = self.app_made = True
        if self.typed_app is not None:
            self.typed_app.connection_made(self)  # a compiled protocol: a C call
        else:
            self.app.connection_made(self)
        if self.state == OPEN:
            self._read()  # a request that came with the client's Finished
        _clear_errors()
        return 0

    def _read_soon(self):
        if self.state == OPEN:
            self._read()

    cdef int _read(self) except -1:
        cdef size_t got, size
        cdef int result, code
        cdef bint eof
        while self.reading and self.state == OPEN:
            _clear_errors()  # the engine's code ran since the last batch
            size = 0
            eof = False
            while size < BATCH:
                got = 0
                result = SSL_read_ex(self.ssl, &read_buffer[size], BATCH - size, &got)
                if result == 1:
                    size += got
                    # Nothing left to decrypt, in OpenSSL or in the BIO: drained. Another
                    # SSL_read_ex would only say "want read", at the cost of a try at the
                    # next record and SSL_get_error (~1k instructions a request).
                    if not SSL_has_pending(self.ssl) and BIO_ctrl(self.rbio, BIO_CTRL_PENDING, 0, NULL) == 0:
                        break
                    continue
                code = SSL_get_error(self.ssl, result)
                if code == SSL_ERROR_WANT_READ:
                    break
                if code == SSL_ERROR_ZERO_RETURN:
                    eof = True
                    break
                self._flush()
                self._fail(_error_text(code))
                return 0
            self._flush()  # a key update or a post-handshake message may want an answer
            if eof:
                self.eof_seen = True
            if size:
                if self.typed_app is not None:  # a compiled protocol: a C call
                    self.typed_app.data_received(PyBytes_FromStringAndSize(<char *>read_buffer, size))
                else:
                    self.on_data(PyBytes_FromStringAndSize(<char *>read_buffer, size))
            if eof or size < BATCH:  # drained
                if self.eof_seen:
                    self._deliver_eof()
                break
        _clear_errors()  # leave nothing behind for Python's ssl in this thread
        return 0

    cdef int _deliver_eof(self) except -1:
        """Tell the engine, once, when it reads and nothing decrypted is held back."""
        if self.eof_delivered or not self.reading or self.state != OPEN:
            return 0
        self.eof_delivered = True
        if not self.app.eof_received():
            self.close()
        return 0

    cdef int _read_shutdown(self) except -1:
        """After our close_notify: drop application data, end on the client's close_notify."""
        cdef size_t got
        cdef int result, code
        _clear_errors()
        while True:
            got = 0
            result = SSL_read_ex(self.ssl, read_buffer, BATCH, &got)
            if result == 1:
                continue
            code = SSL_get_error(self.ssl, result)
            _clear_errors()
            if code == SSL_ERROR_WANT_READ:
                return 0
            break
        self.fd = -1  # the transport's descriptor may be closed, and reused, from here on
        self.tcp.close()
        return 0

    cdef int _flush(self) except -1:
        """OpenSSL's output to the TCP transport; or, with a descriptor (direct_socket),
        straight to the socket while the transport holds nothing of ours, what the
        kernel does not take, or an error, to the transport after it (as the engine's
        direct writes do: lbcore.proxy.http.ClientConnection.write)."""
        cdef long pending
        cdef int got
        cdef ssize_t sent
        while True:
            pending = BIO_ctrl(self.wbio, BIO_CTRL_PENDING, 0, NULL)
            if pending <= 0:
                return 0
            if self.stream is not None:
                got = BIO_read(self.wbio, write_buffer, <int>(pending if pending < BATCH else BATCH))
                if got <= 0:
                    return 0
                self.stream.write_bytes(<char *>write_buffer, got)  # a C call; no bytes object
                continue
            if self.fd >= 0 and (not self.handed or not self.tcp.get_write_buffer_size()):
                self.handed = False
                got = BIO_read(self.wbio, write_buffer, <int>(pending if pending < BATCH else BATCH))
                if got <= 0:
                    return 0
                while True:
                    sent = send(self.fd, write_buffer, got, MSG_DONTWAIT | MSG_NOSIGNAL)
                    if sent >= 0 or errno != EINTR:
                        break
                if sent == got:
                    continue
                if sent < 0:
                    sent = 0  # full (EAGAIN), or an error the transport's write reports
                self.handed = True
                self.tcp.write(PyBytes_FromStringAndSize(<char *>write_buffer + sent, got - sent))
                continue
            if pending > (1 << 30):  # BIO_read takes an int
                pending = 1 << 30
            out = PyBytes_FromStringAndSize(NULL, pending)
            got = BIO_read(self.wbio, <void *>PyBytes_AS_STRING(out), <int>pending)
            if got <= 0:
                return 0
            self.handed = True
            self.tcp.write(out if got == pending else out[:got])

    cdef int _fail(self, str why) except -1:
        log.debug("TLS connection from %s: %s", self.get_extra_info("peername"), why)
        if self.ssl != NULL:
            self._flush()  # the alert, so the client learns why
        self.state = CLOSED
        self._cancel_timer()
        self.fd = -1  # the transport's descriptor may be closed, and reused, from here on
        self.tcp.close()
        return 0

    def _handshake_timeout(self):
        self._cancel_timer()
        log.debug("TLS handshake from %s timed out", self.get_extra_info("peername"))
        self.abort()

    cdef int _cancel_timer(self) except -1:
        if self.expiries is not None:
            self.expiries.remove(self)
        return 0
