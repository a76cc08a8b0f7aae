# Reading and filling the slots of a slotted Python class from C: each slot is a
# member descriptor holding the offset of its pointer in an instance. For an instance
# of exactly that class, a compiled module reads or stores the pointer at that offset
# instead of going through the generic attribute lookup or setattr (~150-250
# instructions a field). Used by _logline (AccessRecord: read, and filled by
# new_record) and _rewrite (ForwardingPolicy read, ResponseFraming filled); a class
# whose field is not a plain slot gets offset -1 and the caller keeps to getattr.

from cpython.object cimport PyObject
from cpython.ref cimport Py_XDECREF, Py_XINCREF

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


cdef inline void store_slot(object instance, Py_ssize_t offset, object value) noexcept:
    """``instance``'s slot at ``offset`` = ``value`` (what setattr does for a plain slot:
    the slot takes a reference, the one it held, if any, is released)."""
    cdef PyObject **slot = slot_at(instance, offset)
    cdef PyObject *old = slot[0]
    Py_XINCREF(<PyObject *>value)
    slot[0] = <PyObject *>value
    Py_XDECREF(old)


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
