# Declarations for the compiled build of flow.py (Cython's augmenting .pxd): the
# classes become extension types with C fields. flow.py itself is the pure twin,
# and the source of both (see lbcore._fastpath: COMPILED_IN_PLACE).

cdef class ReadGate:
    cdef public object transport
    cdef public long reasons
    cpdef pause(self, long reason)
    cpdef resume(self, long reason)
    cpdef attach(self, transport)

cdef class Deadline:
    cdef public object loop, clock
    cdef public object callback
    cdef public double expires
    cdef public double armed
    cdef public object handle
    cpdef extend(self, double seconds)
    cpdef cancel(self)
    cpdef close(self)
    cpdef suspend(self)
