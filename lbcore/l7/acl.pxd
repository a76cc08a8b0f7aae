# Declarations for the compiled build of acl.py (see lbcore/proxy/flow.pxd): the
# matchers as extension types, so that the router and the compound matchers call
# ``matches`` as a C method with the request facts typed.

cimport cython

from lbcore.l7.facts cimport RequestFacts

cdef class Matcher:
    cpdef bint matches(self, RequestFacts facts) except -1

cdef class _Constant(Matcher):
    cdef public bint value
    cpdef bint matches(self, RequestFacts facts) except -1

cdef class _Not(Matcher):
    cdef public Matcher inner
    cpdef bint matches(self, RequestFacts facts) except -1

cdef class _AllOf(Matcher):
    cdef public tuple parts
    @cython.locals(part=Matcher)
    cpdef bint matches(self, RequestFacts facts) except -1

cdef class _AnyOf(Matcher):
    cdef public tuple parts
    @cython.locals(part=Matcher)
    cpdef bint matches(self, RequestFacts facts) except -1

cdef class _Fetch(Matcher):
    cdef public int fetch
    cdef public object name, test
    @cython.locals(fetch=int, line=str)
    cpdef bint matches(self, RequestFacts facts) except -1

cdef class _Present(Matcher):
    cdef public int fetch
    cdef public object name
    @cython.locals(fetch=int)
    cpdef bint matches(self, RequestFacts facts) except -1

cdef class _Src(Matcher):
    cdef public tuple v4, v6, last
    @cython.locals(last=tuple, table=tuple)
    cpdef bint matches(self, RequestFacts facts) except -1
