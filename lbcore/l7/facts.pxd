# Declarations for the compiled build of facts.py (see lbcore/proxy/flow.pxd): the
# request facts as an extension type, read by the compiled http.py and by the ACL
# matchers and balancers.

cimport cython

cdef class RequestFacts:
    cdef public object method, target, headers, client_ip, client_port, sni
    cdef public object _path, _query, _host, _by_name, _cookies, _params
    @cython.locals(target=str, path=str, question=Py_ssize_t, fragment=Py_ssize_t)
    cpdef _split_target(self)
    cpdef _headers_by_name(self)
    cpdef list header_values(self, name)
    cpdef header(self, name)
    cpdef cookie(self, name)
