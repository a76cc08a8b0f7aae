# The compiled clock (_clock.pyx): the engine keeps one in a typed field
# (lbcore/proxy/http.pxd, WorkerContext.clock) and calls now() as a C method.

cdef class Clock:
    cpdef double now(self) except? -1.0
