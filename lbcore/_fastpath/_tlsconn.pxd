# Declarations of the compiled TLS connections (_tlsconn.pyx), so that the compiled
# engine (lbcore/proxy/http.pxd) writes to one, and asks its buffered size, by C calls.

from lbcore._fastpath._streams cimport Stream, StreamProtocol, as_stream_protocol

cdef class TlsConnection


# Connections waiting for a deadline of one length (a server's handshake timeout, or
# SHUTDOWN_TIMEOUT), oldest first, on one loop timer (_tlsconn.pyx).
cdef class Expiries:
    cdef object loop
    cdef readonly double length
    cdef int kind  # which expiry its connections get: HANDSHAKE or SHUTDOWN
    cdef TlsConnection head, tail
    cdef object handle  # the loop timer while armed
    cdef int add(self, TlsConnection conn) except -1
    cdef int remove(self, TlsConnection conn) except -1
    cdef int _arm(self, double now) except -1


cdef class TlsServer:
    cdef readonly tuple contexts
    cdef readonly object lookup
    cdef readonly object default
    cdef readonly double handshake_timeout
    cdef readonly object loop
    cdef readonly object on_failed
    cdef readonly object direct_socket
    cdef tuple pointers  # SSL_CTX * of each context, as ints
    cdef void *default_ctx
    cdef dict sni_choices  # the raw SNI name (None: none) -> (context index, the name as kept)
    cdef Expiries handshakes, shutdowns
    cdef int install_callbacks(self) except -1
    cpdef TlsConnection connection(self, app)

# The protocol of a stream below (its data_received called in C), and a transport to
# the protocol above.
cdef class TlsConnection(StreamProtocol):
    cdef readonly TlsServer server
    cdef public object app
    cdef object tcp
    cdef int state
    cdef bint app_made
    cdef bint handshaken
    cdef bint reading
    cdef bint eof_seen  # the client's close_notify or TCP FIN: nothing more will come
    cdef bint tcp_eof  # the TCP FIN itself: the client's side is shut
    cdef bint eof_delivered  # the engine was told (once)
    cdef Py_ssize_t shutdown_buffered  # write buffer when the shutdown timer was last armed
    cdef Expiries expiries  # the deadline it waits for (None: none)
    cdef TlsConnection prev, next  # its neighbours there
    cdef double due  # when (the engine's monotonic clock)
    cdef public object lbcore_sni
    cdef public object context  # the SSLContext in use (the SNI choice)
    cdef void *ssl
    cdef void *rbio
    cdef void *wbio
    cdef readonly Stream stream  # the TCP transport when it is a Stream: written to in C (_flush)
    cdef StreamProtocol typed_app  # the app when it is a StreamProtocol: its data_received a C call
    cdef object on_data  # otherwise app.data_received, bound when the app is set (as a stream does)
    cdef object sock  # the TCP transport's socket, when direct_socket gave it
    cdef int fd  # its descriptor, written to directly (_flush); -1: never
    cdef bint handed  # ciphertext went to the TCP transport since it was last seen empty
    cdef int _setup(self, TlsServer server, app) except -1
    cdef int _bind(self, app) except -1
    cpdef connection_made(self, transport)
    cpdef data_received(self, data)
    cpdef connection_lost(self, exc)
    cpdef write(self, data)
    cpdef write_last(self, data)
    cdef bint _encrypt(self, data) except -1
    cpdef Py_ssize_t get_write_buffer_size(self)
    cpdef close(self)
    cpdef bint resumed(self)
    cdef int _handshake(self) except -1
    cdef int _read(self) except -1
    cdef int _deliver_eof(self) except -1
    cdef int _read_shutdown(self) except -1
    cdef int _flush(self) except -1
    cdef int _fail(self, str why) except -1
    cdef int _cancel_timer(self) except -1
