# Declarations for the compiled build of balance.py (see lbcore/proxy/flow.pxd): a
# member's runtime state and the balancers as extension types, their fields in C and
# pick/_choose called directly, so picking a member runs no interpreted frame.
# (update and _rebuilt stay Python methods: Cython allows no generator expression in
# a cpdef method, and they run only when a member changes.)

cimport cython

cdef class MemberState:
    cdef public str name
    cdef public long weight
    cdef public bint backup
    cdef str _admin  # the admin property: one of ADMIN_STATES, that tuple's own string
    cdef public bint up
    cdef public long active
    cdef public object data
    cpdef bint is_available(self)

cdef class Balancer:
    cdef public tuple members
    cdef public tuple _tiers, _weights
    cdef public object _signature
    @cython.locals(member=MemberState)
    cpdef pick(self, facts=*, exclude=*)
    cpdef _choose(self, long tier, facts, exclude)

cdef class RoundRobinBalancer(Balancer):
    cdef public tuple _current

cdef class LeastConnBalancer(Balancer):
    cdef public list _next

cdef class RandomBalancer(Balancer):
    cdef public object _rng
    cdef public tuple _cumulative

cdef class HashBalancer(Balancer):
    cdef public str algorithm
    cdef public object _key_of
    cdef public tuple _seeds, _uniform
    cdef public RoundRobinBalancer _fallback
    cdef public object _key
