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
    cdef readonly tuple headers
    cdef readonly str http_version
    cdef readonly bint keep_alive, chunked
    cdef readonly object content_length
    cdef tuple _fields(self)


cdef class InformationalResponse:
    cdef readonly int status
    cdef readonly str reason
    cdef readonly tuple headers


cdef class Data:
    cdef readonly object data


cdef class EndOfMessage:
    cdef readonly tuple trailers
