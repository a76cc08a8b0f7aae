# Declarations for the compiled build of backend.py (see flow.pxd).

cimport cython

from lbcore._fastpath._sockio cimport DescriptorWriter as CDescriptorWriter
from lbcore._fastpath._streams cimport Stream as CStream, StreamProtocol as CStreamProtocol
from lbcore.proxy.flow cimport Deadline, ReadGate

cdef long _PEER_FULL  # ReadGate's reason
cdef CDescriptorWriter _writer  # a direct write's send (backend.py)

cdef class BackendConnection

cdef class OwnerBase:
    cpdef backend_data(self, BackendConnection backend, data)

# A stream's protocol, its data_received called in C (the base declared here only, as
# ClientConnection's in http.pxd).
cdef class BackendConnection(CStreamProtocol):
    cdef public MemberPool pool
    cdef public object transport, sock
    cdef public int fd
    cdef public bint direct, handed
    cdef public CStream stream
    cdef public ReadGate gate
    cdef public object owner
    cdef public bint closed
    cdef public object reader
    cdef public bint reused
    cdef public Deadline deadline
    cdef public object connected
    cpdef connection_made(self, transport)
    @cython.locals(typed_owner=OwnerBase)
    cpdef data_received(self, data)
    cpdef connection_lost(self, exc)
    @cython.locals(stream=CStream)
    cpdef write(self, data)
    cpdef close(self)
    cpdef abort(self)
    cpdef release(self)

cdef class MemberPool:
    cdef public object loop, host, port, connect_kwargs, all, waiters
    cdef public list idle
    cdef public long idle_max
    cdef public double idle_timeout
    cdef public long in_use
    cdef public long connects, reuses, connect_errors
    cdef public bint on_streams
    cpdef take_slot(self)
    cpdef free_slot(self)
    @cython.locals(conn=BackendConnection, idle=list, stream=CStream)
    cpdef take_idle(self)
    cpdef put_idle(self, BackendConnection conn)
    cpdef forget(self, BackendConnection conn)

cdef class BackendPools:
    cdef public object loop
    cdef public dict pools
    cpdef MemberPool get(self, host, port, long idle_max, double idle_timeout, conn_key=*, connect_kwargs=*)
