# Declarations for the compiled build of runtime.py (see flow.pxd): a revision's
# listeners and pools as extension types, so the compiled request path reads their
# fields, and the spec values it needs on every request, as C fields.

cimport cython

from lbcore.l7.balance cimport Balancer
from lbcore.l7.router cimport Router

cdef class MemberInfo:
    # public: set through their descriptors (lbcore/l7/frozen.py)
    cdef public str pool, name, host, authority
    cdef public object port

cdef class PoolRuntime:
    cdef public object spec
    cdef public str name
    cdef public tuple members
    cdef public dict by_name
    cdef public Balancer balancer
    cdef public object persistence
    cdef public dict connect_kwargs
    cdef public str conn_key
    cdef public long idle_per_member, max_conns_per_member, retries
    cdef public double connect_timeout, server_timeout, keepalive_timeout, tunnel_timeout
    cdef public object strip_cookie
    cdef public object counters
    cdef public dict member_counters, member_pools

cdef class ListenerRuntime:
    cdef public object spec
    cdef public str name, protocol
    cdef public bint serves_http, https
    cdef public Router router
    cdef public dict pools
    cdef public object policy, tls
    cdef public tuple response_headers
    cdef public object client_auth
    cdef public double client_timeout, http_request_timeout, keepalive_timeout
    cdef public object max_body, redirect
    cdef public long max_request_line, max_header_bytes, max_headers

cdef class Revision:
    cdef public object spec, id, tls
    cdef public dict pools, listeners

# parse_client_text's cache of client addresses, read as a dict (no attribute lookup);
# the function a C call from http.pxd's connection_made.
cdef dict _ADDRESSES
cpdef tuple parse_client_text(peer)
cdef dict _ADDRESSES_V4
@cython.locals(known=tuple)
cpdef tuple client_v4(number)
cdef tuple _remember(dict cache, key, ip)
