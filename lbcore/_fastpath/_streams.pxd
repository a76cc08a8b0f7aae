# Declarations of the compiled streams (_streams.pyx), so that compiled callers reach
# a Stream's fields and methods in C: the engine's connection_made reads an accepted
# client's address from it (lbcore/proxy/http.pxd). The pure twin is _streams_py.

from libc.stdint cimport uint32_t

cdef class Poller
cdef class Stream


cdef class StreamProtocol:
    # The base of the compiled protocols a stream reads into (the engine's client and
    # member connections, the TLS layer): a stream calls their data_received in C, where
    # it called the bound method (a Python call) per read, and their connection_made and
    # connection_lost likewise (method calls by name, once per connection each). Any
    # other protocol still works.
    cpdef connection_made(self, transport)
    cpdef data_received(self, data)
    cpdef connection_lost(self, exc)


cdef inline StreamProtocol as_stream_protocol(protocol):
    # ``protocol`` when it is a StreamProtocol (called in C), else None: for a stream and
    # for the TLS layer above one, which both keep a protocol so.
    return <StreamProtocol>protocol if isinstance(protocol, StreamProtocol) else None


cdef class ProtocolMaker:
    # The base of a compiled protocol factory (the engine's, per bound address): an
    # acceptor calls its make() in C, where it called the factory (a Python call) per
    # accepted connection. Any other callable still works.
    cpdef make(self)


cdef class _Watched:
    cdef Poller poller
    cdef int fd
    cdef int ready(self, uint32_t events) except -1

cdef class Poller:
    cdef int epfd
    cdef object loop
    cdef dict watched  # fd -> _Watched: what is in the set, kept alive while it is
    cdef list retired  # taken out during run(): kept alive to the end of its batch
    cdef list due  # streams whose connection_lost is due
    cdef bint running  # in run(): due streams are handled at its end
    cdef bint due_scheduled  # a loop callback will handle them
    cdef Stream unsent, unsent_last  # streams written to during run(), linked by next_unsent: sent at its end
    cdef long long held_since  # CLOCK_MONOTONIC ns when the first of them was written
    cdef Py_ssize_t users
    cdef int ctl(self, int op, _Watched watched, uint32_t events) except -1
    cdef int forget(self, _Watched watched) except -1
    cdef int watch(self, _Watched watched, uint32_t events) except -1
    cdef int defer_lost(self, Stream stream) except -1
    cdef int run_due(self) except -1
    cdef int queue(self, Stream stream) except -1
    cdef int send_unsent(self) except -1
    cdef int release(self) except -1
    cdef int dispose(self) except -1

cdef class Acceptor(_Watched):
    cdef object sock, protocol_factory, retry, loop
    cdef bint serving, registered, nodelay_each
    cdef int unregister(self) except -1
    cdef int ready(self, uint32_t events) except -1

cdef class StreamSocket:
    cdef Stream _stream
    cdef readonly int family, type, proto
    cpdef int fileno(self)

cdef class Stream(_Watched):
    cdef object loop
    cdef readonly int family
    cdef object _peername  # the tuple (None: made from peer_v4, or asked of the socket)
    cdef readonly long long peer_v4  # an IPv4 peer's address as a number; -1: another family
    cdef readonly int peer_port  # with peer_v4
    cdef object protocol
    cdef StreamProtocol typed_protocol  # the protocol when it is a StreamProtocol: its data_received a C call
    cdef object on_data  # protocol.data_received, bound once (as uvloop does): no lookup by name per read
    cdef bytearray buffer  # what the socket has not taken yet; None while nothing waited
    cdef Py_ssize_t high, low
    cdef uint32_t mask  # the events registered in the poller's set
    cdef bint protocol_paused, closing, lost, paused, read_eof, eof, reading, writing
    cdef bint queued  # in the poller's unsent chain: what it was given during the batch leaves at its end
    cdef Stream next_unsent
    cdef bytes held  # the batch's one write so far, kept as given (not yet in ``buffer``)
    cdef StreamSocket view  # made when asked for
    cdef object lost_exc
    cpdef int fileno(self)
    cpdef close(self)
    cpdef abort(self)
    cdef int bind(self, protocol) except -1
    cdef int ready(self, uint32_t events) except -1
    cdef int read_ready(self) except -1
    cpdef write(self, data)
    cdef int write_bytes(self, const char *data, Py_ssize_t size) except -1
    cdef int put(self, const char *data, Py_ssize_t size, bytes owner) except -1
    cpdef bint is_closing(self)
    cdef ssize_t send_now(self, const char *data, Py_ssize_t size) except -2
    cdef int hold(self, bytes data) except -1
    cdef int append(self, const char *data, Py_ssize_t size) except -1
    cpdef Py_ssize_t get_write_buffer_size(self)
    cpdef write_eof(self)
    cdef int write_ready(self) except -1
    cdef int send_held(self) except -1
    cdef int shutdown_write(self) except -1
    cdef int maybe_pause_protocol(self) except -1
    cdef int maybe_resume_protocol(self) except -1
    cdef int update(self) except -1
    cdef int force_close(self, exc) except -1
    cdef int finish(self, exc) except -1
    cdef int call_connection_lost(self) except -1
