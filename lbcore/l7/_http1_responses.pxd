# Declarations for the compiled build of _http1_responses.py (see lbcore/proxy/flow.pxd).

cimport cython

from lbcore._fastpath._events cimport Response as CResponse
from lbcore._fastpath._heads cimport HeadScanner as CHeadScanner
from lbcore.l7._http1_state cimport ReaderBase

cdef CHeadScanner _scanner  # the scan and the maker as C methods (_http1_responses.py)

cdef class ResponseReader(ReaderBase):
    cdef public list _expected
    cdef public object _chunks, _begun, _head_bytes, _carry, _cut, _reason, _left, _direct
    cpdef expect(self, method)
    cpdef list feed(self, data)
    @cython.locals(event=CResponse, status=int, end=Py_ssize_t, body=Py_ssize_t, keep_alive=bint)
    cpdef _whole_message(self, data)
    cpdef _fast_head(self, tuple head)
