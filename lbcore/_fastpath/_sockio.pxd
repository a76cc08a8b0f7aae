# The compiled socket calls (_sockio.pyx) that the compiled engine calls as C methods:
# lbcore/proxy/http.pxd and backend.pxd hold a DescriptorWriter in a typed global.

cdef class DescriptorWriter:
    cpdef Py_ssize_t send_now(self, int fd, data)
    cpdef int cork(self, int fd) except -1
