# Declarations for the compiled build of router.py (see lbcore/proxy/flow.pxd): the
# Router as an extension type, so the compiled request path reaches its route
# function as a C field. The matchers (acl.py) and the route functions built here
# are closures: compiled as they are, with nothing to declare.

cdef class Router:
    cdef public tuple rules, _table
    cdef public object default_pool, _default, route
