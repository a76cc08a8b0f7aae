# Declarations for the compiled build of facts.py (see lbcore/proxy/flow.pxd): the
# request facts as an extension type, read by the compiled http.py and by the ACL
# matchers and balancers.

cimport cython

cdef dict _LOWERED, _SNI_NAMES
cdef Py_ssize_t _LOWERED_MAX

@cython.locals(lowered=str)
cpdef str lower_kept(dict kept, str value)

cdef class RequestFacts:
    cdef public object method, target, headers, client_ip, client_port, sni
    cdef public object _path, _query, _host, _cookies, _params
    cdef public dict _by_name
    cdef _setup(self, method, target, headers, client_ip, client_port, sni)
    @cython.locals(target=str, path=str, question=Py_ssize_t, fragment=Py_ssize_t)
    cpdef _split_target(self)
    cpdef str fetch_path(self)
    cpdef str fetch_query(self)
    cpdef str fetch_host(self)
    @cython.locals(jar=dict)
    cpdef dict fetch_cookies(self)
    @cython.locals(params=dict)
    cpdef dict fetch_params(self)
    @cython.locals(by_name=dict)
    cpdef dict _headers_by_name(self)
    @cython.locals(by_name=dict, values=list)
    cpdef list header_values(self, name)
    @cython.locals(by_name=dict, values=list)
    cpdef header(self, name)
    @cython.locals(cookies=dict, by_name=dict)
    cpdef cookie(self, name)

@cython.locals(facts=RequestFacts)
cpdef RequestFacts new_request_facts(method, target, headers, client_ip, client_port, sni)
