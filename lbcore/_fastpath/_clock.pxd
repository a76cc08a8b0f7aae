# The compiled clock (_clock.pyx): the engine keeps one in a typed field
# (lbcore/proxy/http.pxd, WorkerContext.clock) and calls now() as a C method; the
# compiled streams' poller holds it for each epoll wake-up (_streams.pyx).

cdef int hold_now() except -1
cdef void release_now() noexcept

cdef class Clock:
    cpdef double now(self) except? -1.0
    cpdef double wall(self) except? -1.0
