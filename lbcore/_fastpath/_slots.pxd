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


cdef inline bint slot_offsets(object cls, tuple names, Py_ssize_t *out):
    """Each name's offset into ``out``; False (leave the fast read off) when any of
    them is not a plain slot."""
    cdef Py_ssize_t i
    for i in range(len(names)):
        out[i] = slot_offset(cls, names[i])
        if out[i] < 0:
            return False
    return True


cdef inline object slot_or_getattr(object instance, object cls, Py_ssize_t *offsets, tuple names, int field):
    """``getattr(instance, names[field])``: from the slot at ``offsets[field]`` when
    ``instance`` is exactly ``cls`` (None: never) and the slot is set."""
    cdef PyObject *value
    if type(instance) is cls:
        value = slot_at(instance, offsets[field])[0]
        if value != NULL:
            return <object>value
    return getattr(instance, names[field])
