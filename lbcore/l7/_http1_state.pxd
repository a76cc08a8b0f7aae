# Declarations for the compiled build of _http1_state.py (see lbcore/proxy/flow.pxd):
# the readers' shared fields in C.

cdef class ReaderBase:
    cdef public object _state, _tail, _tail_taken, _error, _body, _events
    cdef public object _fast_lane, _max_header_bytes, _max_headers, _parser, _eof, upgraded
    cdef public object _names, _values, _keep_alive
