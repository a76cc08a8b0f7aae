# Declarations for the compiled build of _http1_requests.py (see lbcore/proxy/flow.pxd).

cimport cython

from lbcore._fastpath._heads cimport HeadScanner as CHeadScanner
from lbcore.l7._http1_state cimport ReaderBase

cdef CHeadScanner _scanner  # the scans as C methods (_http1_requests.py)

cdef class RequestReader(ReaderBase):
    cdef public object _max_request_line, _url_budget, _seq, _url, _url_len, _stalled, _chunked, _tunnel
    cdef _setup(self, max_request_line, max_header_bytes, max_headers, fast_lane)
    cpdef list feed(self, data)
    @cython.locals(native=bint)
    cpdef _fast(self, data)

@cython.locals(reader=RequestReader)
cpdef RequestReader new_request_reader(max_request_line, max_header_bytes, max_headers)
