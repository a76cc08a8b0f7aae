# Declarations for the compiled build of flow.py (Cython's augmenting .pxd): the
# classes become extension types with C fields. flow.py itself is the pure twin,
# and the source of both (see lbcore._fastpath: COMPILED_IN_PLACE).

cimport cython

from lbcore._fastpath._clock cimport Clock as CClock

cdef class Admission:
    cdef public dict conns, maxconn
    cdef public object stats, on_idle
    @cython.locals(conns=set)
    cpdef bint admit(self, str listener, conn)
    @cython.locals(conns=set)
    cpdef release(self, str listener, conn)

cdef class ReadGate:
    cdef public object transport
    cdef public long reasons
    cpdef pause(self, long reason)
    cpdef resume(self, long reason)
    cpdef attach(self, transport)

cdef class Deadline

cdef class Timers:
    cdef public object loop, clock
    cdef public CClock monotonic
    cdef public list heap
    cdef public object handle
    cdef public double handle_at
    @cython.locals(heap=list, index=Py_ssize_t)
    cpdef arm(self, Deadline deadline)
    @cython.locals(heap=list, index=Py_ssize_t, last=Deadline, parent=Deadline)
    cpdef disarm(self, Deadline deadline)
    @cython.locals(heap=list, above=Deadline, parent=Py_ssize_t, armed=double)
    cdef _up(self, Py_ssize_t index, Deadline deadline)
    @cython.locals(heap=list, below=Deadline, other=Deadline, child=Py_ssize_t, right=Py_ssize_t,
                   size=Py_ssize_t, armed=double)
    cdef _down(self, Py_ssize_t index, Deadline deadline)
    @cython.locals(heap=list, deadline=Deadline, due=double)
    cpdef _run(self)
    @cython.locals(monotonic=CClock)
    cpdef double now(self) except? -1.0

cpdef Timers timers_of(loop)

# A connection's socket and whether it writes to it directly: C calls from http.pxd's
# connection_made, once per connection.
cpdef object transport_socket(transport)
cpdef object transport_peer(transport, sock)
cpdef bint writes_direct(transport)

cdef class Deadline:
    cdef public Timers timers
    cdef public object callback
    cdef public double expires
    cdef public double armed
    cdef public Py_ssize_t index
    @cython.locals(now=double, expires=double)
    cpdef extend(self, double seconds)
    cpdef cancel(self)
    cpdef close(self)
    cpdef suspend(self)
    cpdef _fire(self, double due)
    cdef _setup(self, loop, callback)

@cython.locals(gate=ReadGate)
cpdef ReadGate new_read_gate()
@cython.locals(deadline=Deadline)
cpdef Deadline new_deadline(loop, callback)
