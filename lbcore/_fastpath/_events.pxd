# The compiled events' fields (``_events.pyx``): C fields that the compiled readers fill
# and the compiled proxy reads directly. ``readonly`` from Python; frozen besides.

cdef class Request:
    cdef readonly str method, target
    cdef readonly tuple headers
    cdef readonly str http_version
    cdef readonly bint keep_alive, chunked
    cdef readonly object content_length
    cdef readonly bint expect_continue
    cdef readonly object upgrade
    cdef tuple _fields(self)


cdef class Response:
    cdef readonly int status
    cdef readonly str reason
    cdef readonly str http_version
    cdef readonly bint keep_alive, chunked
    cdef readonly object content_length
    # ``headers`` is a property: the tuple, made from the field lines on first use when
    # the event holds them as received (``_lines`` not None: the fast lane's
    # ``_heads.scan_response_event``). ``_lines[_lines_start:_lines_end]`` are whole
    # field lines, each ending in CRLF, every name and value checked by the scan.
    cdef tuple _headers
    cdef bytes _lines
    cdef Py_ssize_t _lines_start, _lines_end
    cdef tuple _fields(self)
    cdef tuple header_tuple(self)


cdef class InformationalResponse:
    cdef readonly int status
    cdef readonly str reason
    cdef readonly tuple headers


cdef class Data:
    cdef readonly object data


cdef class EndOfMessage:
    cdef readonly tuple trailers
