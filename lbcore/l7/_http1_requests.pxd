# Declarations for the compiled build of _http1_requests.py (see lbcore/proxy/flow.pxd).

from lbcore.l7._http1_state cimport ReaderBase

cdef class RequestReader(ReaderBase):
    cdef public object _max_request_line, _url_budget, _seq, _url, _url_len, _stalled, _chunked, _tunnel
    cpdef list feed(self, data)
    cpdef _fast(self, data)
