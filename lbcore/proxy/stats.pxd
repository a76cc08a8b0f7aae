# Declarations for the compiled build of stats.py (see flow.pxd): the request path's
# counters as C integers, incremented in place by the compiled http.py.

cimport cython

cdef class _Counters:
    cdef public long long[::1] responses  # an array("q") in both twins (stats.py)
    @cython.locals(klass=long)
    cpdef response(self, long status)

cdef class ListenerCounters(_Counters):
    cdef public long long conns_total, requests, bytes_in, bytes_out, denied, errors
    cdef public long long tls_full, tls_resumed, tls_failed, conns_cur

cdef class PoolCounters(_Counters):
    cdef public long long requests, connect_errors, response_errors, retries, redispatches
    cdef public long long queued, queue_timeouts, no_member

cdef class MemberCounters(_Counters):
    cdef public long long conns_total, requests, connect_errors, response_errors
    cdef public long long bytes_in, bytes_out, latency_sum_us
    cdef public long long[::1] latency
    @cython.locals(index=Py_ssize_t, bound=double, micros=cython.longlong)
    cpdef observe(self, double seconds)

cdef class WorkerStats:
    cdef public dict listeners, pools, members
    cpdef ListenerCounters listener(self, name)
    cpdef PoolCounters pool(self, name)
    cpdef MemberCounters member(self, pool, name)
