# A byte buffer that starts in storage its owner provides (a stack array) and moves
# to the heap when it outgrows it: the growth step shared by _rewrite's head buffer
# and _logline's line buffer. Memory comes from PyMem_*; free it with PyMem_Free.

from cpython.mem cimport PyMem_Malloc, PyMem_Realloc
from libc.string cimport memcpy


cdef inline int grow_buffer(char **data, Py_ssize_t *capacity, Py_ssize_t used, Py_ssize_t extra,
                            bint on_heap) except -1:
    """Room for ``extra`` bytes after the ``used`` ones: double the capacity, or more if
    that is not enough. A buffer still in its owner's storage (``on_heap`` false) is
    copied to a new heap block; one on the heap is reallocated."""
    cdef Py_ssize_t new_capacity = capacity[0] * 2
    cdef char *p
    if new_capacity < used + extra:
        new_capacity = used + extra
    if on_heap:
        p = <char *>PyMem_Realloc(data[0], new_capacity)
    else:
        p = <char *>PyMem_Malloc(new_capacity)
        if p != NULL:
            memcpy(p, data[0], used)
    if p == NULL:
        raise MemoryError()
    data[0] = p
    capacity[0] = new_capacity
    return 0
