# Reading the slots of a slotted Python class from C: each slot is a member
# descriptor holding the offset of its pointer in an instance. For an instance of
# exactly that class, a compiled module reads the pointer at that offset instead of
# going through the generic attribute lookup (~150-250 instructions a field). Used
# by _logline (AccessRecord) and _rewrite (ForwardingPolicy); a class whose field
# is not a plain slot gets offset -1 and the caller keeps to getattr.

from cpython.object cimport PyObject

cdef extern from "Python.h":
    """
    #include "structmember.h"
    """
    ctypedef struct PyMemberDef:
        Py_ssize_t offset
    ctypedef struct PyMemberDescrObject:
        PyMemberDef *d_member


cdef inline Py_ssize_t slot_offset(object cls, str name):
    """The offset of ``cls``'s slot ``name`` in an instance, or -1 when that attribute
    is not a plain slot (a member descriptor) of ``cls`` itself."""
    from types import MemberDescriptorType

    descr = cls.__dict__.get(name)
    if type(descr) is not MemberDescriptorType:
        return -1
    return (<PyMemberDescrObject *><PyObject *>descr).d_member.offset


cdef inline PyObject **slot_at(object instance, Py_ssize_t offset) noexcept:
    """The slot's pointer in ``instance`` (NULL inside: the slot is unset)."""
    return <PyObject **>((<char *><PyObject *>instance) + offset)
