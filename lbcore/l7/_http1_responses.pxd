# Declarations for the compiled build of _http1_responses.py (see lbcore/proxy/flow.pxd).

from lbcore.l7._http1_state cimport ReaderBase

cdef class ResponseReader(ReaderBase):
    cdef public list _expected
    cdef public object _chunks, _begun, _head_bytes, _carry, _cut, _reason, _left, _direct
    cpdef expect(self, method)
    cpdef list feed(self, data)
    cpdef _whole_message(self, data)
    cpdef _fast_head(self, tuple head)
