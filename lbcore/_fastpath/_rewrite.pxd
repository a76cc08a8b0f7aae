# The compiled header rewriting (_rewrite.pyx) that the compiled engine calls as C
# methods: lbcore/proxy/http.pxd holds a HeadWriter in a typed global.

ctypedef struct Framing:
    bint keep_alive
    bint chunked
    bint has_body

cdef class HeadWriter:
    cdef readonly bint keep_alive, chunked  # of the last for_client
    cpdef bytes for_member(self, request, policy, client_ip, default_host, strip_cookie, connection_headers,
                           connection_header_names)
    cpdef bytes for_client(self, response, request_method, client_version, client_keep_alive, extra_headers)
