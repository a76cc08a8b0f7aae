# The compiled scans' C methods (_heads.pyx): the compiled readers (lbcore/l7/
# _http1_requests.pxd, _http1_responses.pxd) hold a HeadScanner in a typed global.

from lbcore._fastpath._events cimport Data, Request

cdef class HeadScanner:
    cpdef tuple scan_request(self, bytes data, Py_ssize_t pos, Py_ssize_t max_request_line,
                             Py_ssize_t max_header_bytes, Py_ssize_t max_headers)
    cpdef tuple scan_response_event(self, bytes data, Py_ssize_t pos, str method, Py_ssize_t max_header_bytes,
                                    Py_ssize_t max_headers)
    cpdef Request make_request(self, str method, str target, tuple headers, str version, bint keep_alive,
                               content_length)
    cpdef Data make_data(self, bytes data)
