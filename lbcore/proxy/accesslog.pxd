# Declarations for the compiled build of accesslog.py (see flow.pxd): a log's buffer
# and the per-listener table as extension types, so handing over a request's record
# (for_listener, then log) is two direct calls and no interpreted frame.
# AccessRecord stays a Python dataclass: the compiled formatters read its slots
# (lbcore/_fastpath/_logline.pyx).

cdef class AccessLog:
    cdef public object settings
    cdef public long worker, max_pending, batch
    cdef public double interval
    cdef public object _format, _sink
    cdef public long _lost
    cdef public bint _bad_record_seen, _closed
    cdef public object _loop, _timer, _soon
    cdef public list _records
    cpdef log(self, record)

cdef class AccessLogs:
    cdef public long worker
    cdef public object _loop
    cdef public dict _tunables, _logs, _by_listener
    cdef public long _retired_dropped
    cpdef AccessLog for_listener(self, str name)
