# Declarations for the compiled build of router.py (see lbcore/proxy/flow.pxd): the
# Router as an extension type whose route() the compiled request path calls directly,
# with the request facts typed. The matchers (acl.pxd) are extension types too: their
# ``matches`` is a C method call.

cimport cython

from lbcore.l7.acl cimport Matcher
from lbcore.l7.facts cimport RequestFacts, lower_kept

cdef dict _FOLDED  # router.py: Host values lowered, by value as sent

cdef class Route:
    cdef public object pool, acl  # public: set through their descriptors (frozen.py)

cdef class Router:
    cdef public tuple rules, _table, _routes, _generic, _exact_buckets, _folded_buckets
    cdef public object default_pool, _default
    cdef public bint indexed
    cdef public Py_ssize_t _count
    cdef public dict _header_exact, _header_folded, _host_exact
    @cython.locals(best=Py_ssize_t, i=Py_ssize_t, count=Py_ssize_t, path=str, line=str, value=str, matcher=Matcher)
    cpdef Route route(self, RequestFacts facts)
    @cython.locals(i=Py_ssize_t, header_exact=dict, header_folded=dict)
    cdef Py_ssize_t _host_header_best(self, str value, Py_ssize_t best, Py_ssize_t count) except -1

@cython.locals(i=Py_ssize_t, n=Py_ssize_t, lowest=Py_ssize_t, prefixes=dict)
cdef Py_ssize_t _best_prefix(tuple buckets, str path, Py_ssize_t best, Py_ssize_t count) except -1
