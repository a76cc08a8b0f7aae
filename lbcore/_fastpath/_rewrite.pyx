# cython: language_level=3, boundscheck=False, wraparound=False
"""Header rewriting between client and member: the compiled twin.

Same interface and behaviour as ``_rewrite_py`` (the reference; the rules are in
``lbcore.l7.rewrite``): the same bytes, field order included, the same
``ResponseFraming`` values and the same exceptions. The difference is how the head
is made. The pure twin builds a list of fields, then ``encode_*_head`` checks every
name and value with regexes, joins the lines and encodes latin-1; here one pass over
the parsed fields decides drop or keep, checks each field that is written and copies
it straight into a byte buffer:

- names are classified (hop-by-hop, Host, X-Forwarded-*, Forwarded, ...) by a
  case-insensitive C compare on the str's own bytes; no lower-case copy is made
  unless a set has to be asked (Connection options, add_headers names,
  ``connection_header_names``), and none for a name already in lower case;
- the checks are those of ``_http1_writers._fields``: a name is one or more RFC 9110
  tchar, a value holds no CTL but HTAB. As there, every name is checked before any
  value: the first bad name in head order is reported, else the first bad value;
  the start line is checked before the fields (``invalid method``, ``invalid
  request target``, ``invalid status``, ``invalid character in reason``);
- a str whose characters are all <= 0xff (CPython's 1-byte kind) already holds its
  latin-1 bytes and is copied as is; one with a wider character is put aside and,
  if no ValueError comes first, the whole head is rebuilt as a str and encoded, so
  the UnicodeEncodeError is the codec's own (same message, same positions).

A name that is not ASCII is lower-cased by Python's ``str.lower`` (U+212A KELVIN
SIGN lower-cases to "k"), so it is dropped or kept exactly as by the pure twin.

One difference, on purpose: a name made of tokens joined by a bare LF (``"A\\nB"``)
passes ``_fields`` (its check joins all names with LF and matches a token list) but
is refused here, as RFC 9110 asks; and a field whose name or value is not a str is a
TypeError here, while the pure twin fails on it in various ways.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.object cimport PyTypeObject
from cpython.ref cimport PyObject, Py_INCREF, Py_XDECREF
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.unicode cimport (
    PyUnicode_1BYTE_DATA,
    PyUnicode_1BYTE_KIND,
    PyUnicode_Check,
    PyUnicode_DATA,
    PyUnicode_GET_LENGTH,
    PyUnicode_KIND,
    PyUnicode_New,
    PyUnicode_READ,
)
from libc.stdint cimport uint64_t
from cpython.mem cimport PyMem_Free
from libc.string cimport memcpy

from lbcore._fastpath._events cimport Request, Response

from lbcore._fastpath._fieldlines cimport FieldLine, read_field_line, word_has_ctl
from lbcore._fastpath._growbuf cimport grow_buffer
from lbcore._fastpath._slots cimport slot_offsets, slot_or_getattr, store_slot

from lbcore.l7._forwarding import ForwardingPolicy, ResponseFraming
from lbcore.l7._http1_headers import BAD_VALUE_RE, HOP_BY_HOP, TOKEN_RE

__all__ = ["IMPLEMENTATION", "HeadWriter", "request_head_for_member", "response_head_for_client"]

# ResponseFraming is made without running its Python __init__ (a third of the time of
# a small response head) when its slots are the four this module knows: allocated,
# and its four slots stored at their offsets (_slots.pxd), not set by attribute.
_FRAMING_FIELDS = ("head", "keep_alive", "chunked", "has_body")
cdef Py_ssize_t _framing_offset[4]
cdef bint _FILL_FRAMING = (
    tuple(ResponseFraming.__slots__) == _FRAMING_FIELDS
    and ResponseFraming.__new__ is object.__new__
    and slot_offsets(ResponseFraming, _FRAMING_FIELDS, _framing_offset)
)
FRAMING_SLOTS = _FILL_FRAMING  # tests: a framing's slots are stored directly

IMPLEMENTATION = "compiled"

# A ForwardingPolicy's fields, read from its slots (lbcore/_fastpath/_slots.pxd): seven
# generic attribute lookups a request otherwise. Off when any field is not a slot.
_POLICY_FIELDS = ("_replaced", "xff", "xfp", "xfport", "forwarded", "proto", "port", "add_headers")
cdef Py_ssize_t _policy_offset[8]
cdef tuple _policy_names = _POLICY_FIELDS  # a C global: no module dictionary lookup per read
cdef object _policy_type = None
cdef enum:
    P_REPLACED = 0
    P_XFF = 1
    P_XFP = 2
    P_XFPORT = 3
    P_FORWARDED = 4
    P_PROTO = 5
    P_PORT = 6
    P_ADD_HEADERS = 7


if slot_offsets(ForwardingPolicy, _POLICY_FIELDS, _policy_offset):
    _policy_type = ForwardingPolicy
POLICY_SLOTS = _policy_type is not None  # tests: the fast read is on


cdef inline object _policy(object policy, int field):
    """``getattr(policy, _POLICY_FIELDS[field])``, from the slot for a ForwardingPolicy."""
    return slot_or_getattr(policy, _policy_type, _policy_offset, _policy_names, field)

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object o)
    # The same macros on borrowed pointers (no reference counting in the scan loops).
    bint PyTuple_CheckExact_p "PyTuple_CheckExact" (PyObject *o)
    Py_ssize_t PyTuple_GET_SIZE_p "PyTuple_GET_SIZE" (PyObject *o)
    PyObject *PyTuple_GET_ITEM_p "PyTuple_GET_ITEM" (PyObject *o, Py_ssize_t i)
    bint PyUnicode_CheckExact_p "PyUnicode_CheckExact" (PyObject *o)
    bint PyUnicode_IS_ASCII_p "PyUnicode_IS_ASCII" (PyObject *o)
    Py_ssize_t PyUnicode_GET_LENGTH_p "PyUnicode_GET_LENGTH" (PyObject *o)
    unsigned char *PyUnicode_1BYTE_DATA_p "PyUnicode_1BYTE_DATA" (PyObject *o)
    object PyType_GenericAlloc(PyTypeObject *type, Py_ssize_t nitems)

# Connection options that never remove anything more: hop-by-hop fields are removed
# anyway, framing fields never (see lbcore.l7.rewrite).
cdef frozenset _SKIP_TOKENS = HOP_BY_HOP | frozenset({"host", "content-length", "transfer-encoding"})

# RFC 9110 5.6.2 tchar; RFC 9110 5.5 bad value characters (CTL but HTAB).
cdef unsigned char _TCHAR[256]
cdef unsigned char _BAD[256]


cdef void _init_tables():
    cdef int c
    cdef bytes tchar = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    for c in range(256):
        _TCHAR[c] = 0
        _BAD[c] = (c < 0x20 and c != 0x09) or c == 0x7F
    for c in tchar:
        _TCHAR[c] = 1


_init_tables()

# Name classes; every class from C_HOST up is never a Connection option worth
# keeping (framing or hop-by-hop), every class from C_HOP up is removed.
cdef enum:
    C_OTHER = 0
    C_XFF = 1
    C_FORWARDED = 2
    C_XFPROTO = 3
    C_XFPORT = 4
    C_HOST = 5
    C_CONTENT_LENGTH = 6
    C_HOP = 7
    C_UPGRADE = 8
    C_CONNECTION = 9

cdef enum:
    STACK_SIZE = 2048


cdef inline bint _ieq(const unsigned char *s, const char *lower, Py_ssize_t n) noexcept:
    """s (ASCII, n bytes) equals ``lower`` ignoring ASCII case."""
    cdef Py_ssize_t i
    cdef unsigned char c
    for i in range(n):
        c = s[i]
        if <unsigned char>(c - 65) < 26:  # A-Z
            c += 32
        if c != <unsigned char>lower[i]:
            return False
    return True


cdef int _classify(const unsigned char *s, Py_ssize_t n) noexcept:
    """The class of an ASCII field name, any case."""
    if n == 2:
        if _ieq(s, b"te", 2):
            return C_HOP
    elif n == 4:
        if _ieq(s, b"host", 4):
            return C_HOST
    elif n == 7:
        if _ieq(s, b"upgrade", 7):
            return C_UPGRADE
    elif n == 9:
        if _ieq(s, b"forwarded", 9):
            return C_FORWARDED
    elif n == 10:
        if _ieq(s, b"connection", 10):
            return C_CONNECTION
        if _ieq(s, b"keep-alive", 10):
            return C_HOP
    elif n == 14:
        if _ieq(s, b"content-length", 14):
            return C_CONTENT_LENGTH
    elif n == 15:
        if _ieq(s, b"x-forwarded-for", 15):
            return C_XFF
    elif n == 16:
        if _ieq(s, b"x-forwarded-port", 16):
            return C_XFPORT
        if _ieq(s, b"proxy-connection", 16):
            return C_HOP
    elif n == 17:
        if _ieq(s, b"x-forwarded-proto", 17):
            return C_XFPROTO
        if _ieq(s, b"transfer-encoding", 17):
            return C_HOP
    return C_OTHER


cdef inline object _classify_name(object name, int *code):
    """Sets ``code[0]`` to the class of a field name (a str). Returns ``name.lower()``
    when that had to be made (a name that is not ASCII), else None."""
    if PyUnicode_IS_ASCII(name):
        code[0] = _classify(PyUnicode_1BYTE_DATA(name), PyUnicode_GET_LENGTH(name))
        return None
    low = name.lower()
    if PyUnicode_IS_ASCII(low):
        code[0] = _classify(PyUnicode_1BYTE_DATA(low), PyUnicode_GET_LENGTH(low))
    else:
        code[0] = C_OTHER
    return low


cdef str _lower_ascii(const unsigned char *s, Py_ssize_t n):
    """A new str: the n ASCII bytes at s in lower case."""
    cdef str out = PyUnicode_New(n, 127)
    cdef unsigned char *d = PyUnicode_1BYTE_DATA(out)
    cdef Py_ssize_t i
    cdef unsigned char c
    for i in range(n):
        c = s[i]
        if <unsigned char>(c - 65) < 26:
            c += 32
        d[i] = c
    return out


cdef object _lower(object name):
    """``name.lower()`` for an ASCII str, without a copy when it has no upper case."""
    cdef const unsigned char *s = PyUnicode_1BYTE_DATA(name)
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(name)
    cdef Py_ssize_t i
    for i in range(n):
        if <unsigned char>(s[i] - 65) < 26:
            return _lower_ascii(s, n)
    return name


cdef inline bint _is_token(object s) noexcept:
    """s (a str) is one or more tchar."""
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(s)
    cdef Py_ssize_t i
    cdef const unsigned char *p
    if n == 0 or not PyUnicode_IS_ASCII(s):
        return False
    p = PyUnicode_1BYTE_DATA(s)
    for i in range(n):
        if not _TCHAR[p[i]]:
            return False
    return True


cdef enum:
    V_LATIN1 = 0  # a good value, every character <= 0xff
    V_BAD = 1     # holds a CTL other than HTAB
    V_WIDE = 2    # a good value with a character > 0xff (cannot be latin-1)


cdef int _check_value(object s) noexcept:
    """Whether s (a str) is a good field value (no CTL but HTAB), and latin-1."""
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(s)
    cdef Py_ssize_t i = 0
    cdef Py_ssize_t j
    cdef const unsigned char *p
    cdef int kind = PyUnicode_KIND(s)
    cdef void *data
    cdef uint64_t word
    cdef Py_UCS4 c
    if kind == PyUnicode_1BYTE_KIND:
        p = PyUnicode_1BYTE_DATA(s)
        # Eight bytes at a time; a word with a hit (an HTAB, say) is looked at byte by byte.
        while i + 8 <= n:
            memcpy(&word, p + i, 8)
            if word_has_ctl(word):
                for j in range(i, i + 8):
                    if _BAD[p[j]]:
                        return V_BAD
            i += 8
        while i < n:
            if _BAD[p[i]]:
                return V_BAD
            i += 1
        return V_LATIN1
    # A wider kind: CPython keeps every str in its narrowest kind, so it holds a
    # character > 0xff.
    data = PyUnicode_DATA(s)
    for i in range(n):
        c = PyUnicode_READ(kind, data, i)
        if c < 256 and _BAD[c]:
            return V_BAD
    return V_WIDE


# -- the output: a byte buffer, plus the first bad name/value and the wide strs -------

ctypedef struct Out:
    char *data
    Py_ssize_t len
    Py_ssize_t cap
    bint heap
    PyObject *bad_name   # owned reference or NULL
    PyObject *bad_value  # owned reference or NULL
    PyObject *wide       # owned list of (offset, str) or NULL
    char stack[STACK_SIZE]


cdef inline void _out_init(Out *o) noexcept:
    o.data = o.stack
    o.len = 0
    o.cap = STACK_SIZE
    o.heap = False
    o.bad_name = NULL
    o.bad_value = NULL
    o.wide = NULL


cdef void _out_release(Out *o) noexcept:
    if o.heap:
        PyMem_Free(o.data)
        o.heap = False
    o.data = NULL
    Py_XDECREF(o.bad_name)
    Py_XDECREF(o.bad_value)
    Py_XDECREF(o.wide)
    o.bad_name = NULL
    o.bad_value = NULL
    o.wide = NULL


cdef int _grow(Out *o, Py_ssize_t extra) except -1:
    grow_buffer(&o.data, &o.cap, o.len, extra, o.heap)
    o.heap = True
    return 0


cdef inline int _put(Out *o, const char *s, Py_ssize_t n) except -1:
    if o.len + n > o.cap:
        _grow(o, n)
    memcpy(o.data + o.len, s, n)
    o.len += n
    return 0


cdef inline int _put_str(Out *o, object s, int check) except -1:
    """Write s (a str that passed the checks; ``check`` is its _check_value)."""
    if check == V_WIDE:
        if o.wide == NULL:
            wide = []
            Py_INCREF(wide)
            o.wide = <PyObject *>wide
        (<list>o.wide).append((o.len, s))
        return 0
    return _put(o, <const char *>PyUnicode_1BYTE_DATA(s), PyUnicode_GET_LENGTH(s))


cdef int _field(Out *o, object name, object value) except -1:
    """Check one field and write ``name: value`` CRLF.

    Once a bad name or value is seen nothing more is written (the head will not be
    returned) but every later name is still checked, and values until the first bad
    one, so the error is the one _fields reports.
    """
    cdef int check
    if not PyUnicode_Check(name) or not PyUnicode_Check(value):
        raise TypeError(
            f"header names and values must be str, not {type(name).__name__} and {type(value).__name__}"
        )
    if not _is_token(name) and o.bad_name == NULL:
        Py_INCREF(name)
        o.bad_name = <PyObject *>name
    if o.bad_value == NULL:
        check = _check_value(value)
        if check == V_BAD:
            Py_INCREF(value)
            o.bad_value = <PyObject *>value
    else:
        check = V_BAD
    if o.bad_name != NULL or o.bad_value != NULL:
        return 0
    if check == V_WIDE:
        _put(o, <const char *>PyUnicode_1BYTE_DATA(name), PyUnicode_GET_LENGTH(name))
        _put(o, b": ", 2)
        _put_str(o, value, check)
        _put(o, b"\r\n", 2)
        return 0
    return _put_field(o, <const char *>PyUnicode_1BYTE_DATA(name), PyUnicode_GET_LENGTH(name),
                      <const char *>PyUnicode_1BYTE_DATA(value), PyUnicode_GET_LENGTH(value))


cdef inline int _put_field(Out *o, const char *name, Py_ssize_t nlen, const char *value,
                           Py_ssize_t vlen) except -1:
    """Write ``name: value`` CRLF (bytes that passed the checks), with one growth check."""
    cdef Py_ssize_t need = nlen + vlen + 4
    cdef char *p
    if o.len + need > o.cap:
        _grow(o, need)
    p = o.data + o.len
    memcpy(p, name, nlen)
    p[nlen] = 58  # ":"
    p[nlen + 1] = 32
    memcpy(p + nlen + 2, value, vlen)
    p[nlen + 2 + vlen] = 13
    p[nlen + 3 + vlen] = 10
    o.len += need
    return 0


cdef object _finish(Out *o):
    """The head as bytes, or the error _fields / the latin-1 codec would raise."""
    cdef Py_ssize_t prev = 0
    cdef Py_ssize_t offset
    if o.bad_name != NULL:
        raise ValueError(f"invalid header name {<object>o.bad_name!r}")
    if o.bad_value != NULL:
        raise ValueError(f"invalid character in header value {<object>o.bad_value!r}")
    _put(o, b"\r\n", 2)
    if o.wide != NULL:
        # Rebuild the head as the pure twin's str so the codec raises its own error.
        parts = []
        for offset, s in <list>o.wide:
            parts.append(PyBytes_FromStringAndSize(o.data + prev, offset - prev).decode("latin-1"))
            parts.append(s)
            prev = offset
        parts.append(PyBytes_FromStringAndSize(o.data + prev, o.len - prev).decode("latin-1"))
        "".join(parts).encode("latin-1")
        raise AssertionError("a str with a character > 0xff encoded as latin-1")  # pragma: no cover
    return PyBytes_FromStringAndSize(o.data, o.len)


# -- Connection options ----------------------------------------------------------------

cdef object _connection_tokens(tuple headers, bint *close):
    """The options of the Connection fields that can remove a field (those not
    hop-by-hop nor framing), as a set in lower case; None when there are none.

    ``close``, the usual option, sets ``close[0]`` instead of going into the set (the
    caller drops a field named Close with ``_names_close``): with no other option, no
    set is made and no field name is lowered to be looked up in one."""
    cdef Py_ssize_t i, n, start, end, a, b
    cdef const unsigned char *p
    cdef object tokens = None
    cdef PyObject *item
    cdef PyObject *name_p
    for i in range(PyTuple_GET_SIZE(headers)):
        # Most names are ASCII str and not ten characters long: skip them without a
        # reference taken.
        item = PyTuple_GET_ITEM(headers, i)
        if PyTuple_CheckExact_p(item) and PyTuple_GET_SIZE_p(item) == 2:
            name_p = PyTuple_GET_ITEM_p(item, 0)
            if PyUnicode_CheckExact_p(name_p) and PyUnicode_IS_ASCII_p(name_p) and (
                PyUnicode_GET_LENGTH_p(name_p) != 10
                or not _ieq(PyUnicode_1BYTE_DATA_p(name_p), b"connection", 10)
            ):
                continue
        name, value = <object>item
        if not PyUnicode_Check(name):
            name.lower()  # the pure twin's error
            raise TypeError(f"header names must be str, not {type(name).__name__}")
        if PyUnicode_IS_ASCII(name):
            if PyUnicode_GET_LENGTH(name) != 10 or not _ieq(PyUnicode_1BYTE_DATA(name), b"connection", 10):
                continue
        elif name.lower() != "connection":
            continue
        if not PyUnicode_Check(value) or not PyUnicode_IS_ASCII(value):
            for token in value.split(","):
                token = token.strip(" \t").lower()
                if token and token not in _SKIP_TOKENS:
                    if tokens is None:
                        tokens = set()
                    tokens.add(token)
            continue
        p = PyUnicode_1BYTE_DATA(value)
        n = PyUnicode_GET_LENGTH(value)
        start = 0
        while start <= n:
            end = start
            while end < n and p[end] != 44:  # ","
                end += 1
            a = start
            b = end
            while a < b and (p[a] == 32 or p[a] == 9):
                a += 1
            while b > a and (p[b - 1] == 32 or p[b - 1] == 9):
                b -= 1
            if b - a == 5 and _ieq(p + a, b"close", 5):
                close[0] = True
            elif b > a and _classify(p + a, b - a) < C_HOST:
                if tokens is None:
                    tokens = set()
                tokens.add(_lower_ascii(p + a, b - a))
            start = end + 1
    return tokens


cdef inline bint _names_close(object name) except -1:
    """``name.lower() == "close"`` for a str."""
    if PyUnicode_IS_ASCII(name):
        return PyUnicode_GET_LENGTH(name) == 5 and _ieq(PyUnicode_1BYTE_DATA(name), b"close", 5)
    return name.lower() == "close"


# -- start lines -------------------------------------------------------------------------

cdef bint _is_target(object s) noexcept:
    """RFC 9112 3.2 as encode_request_head checks it: ASCII, printable, no SP, not empty."""
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(s)
    cdef Py_ssize_t i
    cdef const unsigned char *p
    if n == 0 or not PyUnicode_IS_ASCII(s):
        return False
    p = PyUnicode_1BYTE_DATA(s)
    for i in range(n):
        if p[i] <= 32 or p[i] == 127:
            return False
    return True


cdef int _request_line(Out *o, object method, object target) except -1:
    """Write ``METHOD target HTTP/1.1`` CRLF; 1 for a bad method, 2 for a bad target."""
    if not PyUnicode_Check(method) or not _is_token(method):
        return 1
    if not PyUnicode_Check(target) or not _is_target(target):
        return 2
    _put(o, <const char *>PyUnicode_1BYTE_DATA(method), PyUnicode_GET_LENGTH(method))
    _put(o, b" ", 1)
    _put(o, <const char *>PyUnicode_1BYTE_DATA(target), PyUnicode_GET_LENGTH(target))
    _put(o, b" HTTP/1.1\r\n", 11)
    return 0


cdef int _raise_request_line(int error, object method, object target) except -1:
    if error == 1:
        if not PyUnicode_Check(method):
            TOKEN_RE.fullmatch(method)  # the pure twin's TypeError
        raise ValueError(f"invalid method {method!r}")
    if not target or not target.isprintable() or " " in target or not target.isascii():
        raise ValueError(f"invalid request target {target!r}")
    raise AssertionError(f"request target {target!r} refused")  # pragma: no cover


cdef int _status_line(Out *o, object status, object reason) except -1:
    """Write ``HTTP/1.1 status reason`` CRLF; 1 for a bad status, 2 for a bad reason."""
    cdef long code
    cdef char digits[3]
    cdef int check
    if not 100 <= status <= 999:
        return 1
    if not PyUnicode_Check(reason):
        return 2
    check = _check_value(reason)
    if check == V_BAD:
        return 2
    _put(o, b"HTTP/1.1 ", 9)
    if type(status) is int:
        code = status
        digits[0] = <char>(48 + code // 100)
        digits[1] = <char>(48 + code // 10 % 10)
        digits[2] = <char>(48 + code % 10)
        _put(o, digits, 3)
    else:
        text = format(status, "03d")
        _put(o, <const char *>PyUnicode_1BYTE_DATA(text), PyUnicode_GET_LENGTH(text))
    _put(o, b" ", 1)
    _put_str(o, reason, check)
    _put(o, b"\r\n", 2)
    return 0


cdef int _raise_status_line(int error, object status, object reason) except -1:
    if error == 1:
        raise ValueError(f"invalid status {status!r}")
    if BAD_VALUE_RE.search(reason) is not None:  # a non-str raises the pure twin's TypeError
        raise ValueError(f"invalid character in reason {reason!r}")
    raise AssertionError(f"reason {reason!r} refused")  # pragma: no cover


cdef object _framing(object head, object keep_alive, object chunked, object has_body):
    """``ResponseFraming(head, keep_alive, chunked, has_body)``."""
    if not _FILL_FRAMING:
        return ResponseFraming(head, keep_alive, chunked, has_body)
    # What object.__new__ does for a plain slotted class: allocate, GC-tracked, slots
    # unset (NULL); then what __init__ does, each slot stored directly.
    framing = PyType_GenericAlloc(<PyTypeObject *>ResponseFraming, 0)
    store_slot(framing, _framing_offset[0], head)
    store_slot(framing, _framing_offset[1], keep_alive)
    store_slot(framing, _framing_offset[2], chunked)
    store_slot(framing, _framing_offset[3], has_body)
    return framing


# -- the two functions ---------------------------------------------------------------------

cdef object _request_head(
    Out *o,
    object request,
    object policy,
    object client_ip,
    object default_host,
    object strip_cookie,
    object connection_headers,
    object connection_header_names,
):
    cdef Py_ssize_t i
    cdef int code
    cdef int line_error
    cdef bint has_host = False
    cdef bint strip = strip_cookie is not None
    cdef object lname
    cdef list kept = None
    cdef list xff_prior = None
    cdef list forwarded_prior = None

    # A compiled event's fields are read as C fields; anything else by attribute.
    cdef Request event = request if type(request) is Request else None
    if event is not None:
        raw, method, target = event.headers, event.method, event.target
    else:
        raw, method, target = request.headers, request.method, request.target
    cdef tuple headers = raw if type(raw) is tuple else tuple(raw)
    line_error = _request_line(o, method, target)

    cdef bint close_named = False
    tokens = _connection_tokens(headers, &close_named)
    replaced = _policy(policy, P_REPLACED)
    cdef bint xff = _policy(policy, P_XFF)
    cdef bint xfp = _policy(policy, P_XFP)
    cdef bint xfport = _policy(policy, P_XFPORT)
    cdef bint forwarded = _policy(policy, P_FORWARDED)
    # Usually the replaced names are just X-Forwarded-Proto/-Port, which the name
    # classes tell; add_headers names make it a set to ask.
    cdef bint ask_replaced = not (
        len(replaced) == <int>xfp + <int>xfport
        and (not xfp or "x-forwarded-proto" in replaced)
        and (not xfport or "x-forwarded-port" in replaced)
    )
    cdef bint ask_names = bool(connection_header_names)
    cdef bint ask = tokens is not None or ask_replaced or ask_names
    if strip:
        kept = []

    for i in range(PyTuple_GET_SIZE(headers)):
        item = <object>PyTuple_GET_ITEM(headers, i)
        name, value = item
        if not PyUnicode_Check(name):
            name.lower()  # the pure twin's error
            raise TypeError(f"header names must be str, not {type(name).__name__}")
        lname = _classify_name(name, &code)
        if code >= C_HOP:
            continue
        if close_named and _names_close(name):
            continue
        if ask:
            if lname is None:
                lname = _lower(name)
            if (
                (tokens is not None and lname in tokens)
                or (ask_replaced and lname in replaced)
                or (ask_names and lname in connection_header_names)
            ):
                continue
        if not ask_replaced and ((code == C_XFPROTO and xfp) or (code == C_XFPORT and xfport)):
            continue
        if code == C_HOST:
            has_host = True
        elif code == C_XFF and xff:
            if xff_prior is None:
                xff_prior = []
            xff_prior.append(value)
            continue
        elif code == C_FORWARDED and forwarded:
            if forwarded_prior is None:
                forwarded_prior = []
            forwarded_prior.append(value)
            continue
        if strip:
            kept.append(item if type(item) is tuple else (name, value))
        else:
            _field(o, name, value)

    if not has_host and default_host:
        # An HTTP/1.0 request may lack Host; the member gets HTTP/1.1, which needs one.
        if strip:
            kept.append(("Host", default_host))
        else:
            _field(o, "Host", default_host)
    if strip:
        for name, value in strip_cookie(kept):
            _field(o, name, value)
    if xff:
        if xff_prior is None:
            _field(o, "X-Forwarded-For", client_ip)
        else:
            xff_prior.append(client_ip)
            _field(o, "X-Forwarded-For", ", ".join(xff_prior))
    if xfp:
        _field(o, "X-Forwarded-Proto", _policy(policy, P_PROTO))
    if xfport:
        _field(o, "X-Forwarded-Port", _policy(policy, P_PORT))
    if forwarded:
        # RFC 7239 6: IPv6 addresses are quoted and bracketed.
        element = f'for="[{client_ip}]"' if ":" in client_ip else f"for={client_ip}"
        element = f"{element};proto={_policy(policy, P_PROTO)}"
        if forwarded_prior is None:
            _field(o, "Forwarded", element)
        else:
            forwarded_prior.append(element)
            _field(o, "Forwarded", ", ".join(forwarded_prior))
    for name, value in _policy(policy, P_ADD_HEADERS):
        _field(o, name, value)
    for name, value in connection_headers:
        _field(o, name, value)
    upgrade = event.upgrade if event is not None else request.upgrade
    if upgrade:
        _field(o, "Connection", "upgrade")
        _field(o, "Upgrade", upgrade)
    if (event.chunked if event is not None else request.chunked):
        _field(o, "Transfer-Encoding", "chunked")
    if line_error:
        _raise_request_line(line_error, method, target)
    return _finish(o)


def request_head_for_member(
    request,
    policy,
    client_ip,
    *,
    default_host="",
    strip_cookie=None,
    connection_headers=(),
    connection_header_names=frozenset(),
):
    """The request head to send to a member.

    ``connection_headers`` are set by this hop for the whole connection (the verified
    client certificate); any header the client sent under one of
    ``connection_header_names`` is removed first, so a client cannot forge them.
    """
    return _request_bytes(request, policy, client_ip, default_host, strip_cookie, connection_headers,
                          connection_header_names)


cdef object _request_bytes(object request, object policy, object client_ip, object default_host, object strip_cookie,
                           object connection_headers, object connection_header_names):
    """_request_head in a buffer of its own (both entry points)."""
    cdef Out o
    _out_init(&o)
    try:
        return _request_head(
            &o, request, policy, client_ip, default_host, strip_cookie, connection_headers, connection_header_names
        )
    finally:
        _out_release(&o)


cdef object _response_bytes(Framing *f, object response, object request_method, object client_version,
                            object client_keep_alive, object extra_headers):
    """_response_head in a buffer of its own (both entry points)."""
    cdef Out o
    _out_init(&o)
    try:
        return _response_head(&o, f, response, request_method, client_version, client_keep_alive, extra_headers)
    finally:
        _out_release(&o)


cdef object _response_head(
    Out *o,
    Framing *f,
    object response,
    object request_method,
    object client_version,
    object client_keep_alive,
    object extra_headers,
):
    cdef Py_ssize_t i
    cdef int code
    cdef int line_error
    cdef object lname
    cdef object upgrade = None

    # A compiled event's fields are read as C fields; anything else by attribute.
    cdef Response event = response if type(response) is Response else None
    cdef tuple headers
    cdef Py_ssize_t fields_at
    if event is not None:
        status, reason = event.status, event.reason
    else:
        status, reason = response.status, response.reason
    line_error = _status_line(o, status, reason)
    fields_at = o.len
    if event is not None and event._lines is not None and _received_lines(o, event):
        return _response_end(o, f, event, status, reason, line_error, None, request_method, client_version,
                             client_keep_alive, extra_headers)
    o.len = fields_at
    raw = event.header_tuple() if event is not None else response.headers
    headers = raw if type(raw) is tuple else tuple(raw)
    cdef bint close_named = False
    tokens = _connection_tokens(headers, &close_named)

    for i in range(PyTuple_GET_SIZE(headers)):
        name, value = <object>PyTuple_GET_ITEM(headers, i)
        if not PyUnicode_Check(name):
            name.lower()  # the pure twin's error
            raise TypeError(f"header names must be str, not {type(name).__name__}")
        lname = _classify_name(name, &code)
        if code >= C_HOP:
            if code == C_UPGRADE and upgrade is None:
                upgrade = value
            continue
        if close_named and _names_close(name):
            continue
        if tokens is not None:
            if lname is None:
                lname = _lower(name)
            if lname in tokens:
                continue
        _field(o, name, value)
    return _response_end(o, f, event if event is not None else response, status, reason, line_error, upgrade,
                         request_method, client_version, client_keep_alive, extra_headers)


cdef int _received_lines(Out *o, Response event) except -1:
    """Write the end-to-end fields of a head the fast lane read, from its field lines
    as received (``_events.pxd``), as the loop over its headers would; 0 when a field
    needs that loop (its name is a Connection option), 1 when written.

    The scan checked every line (a tchar name, a value of VCHAR, SP and HTAB) and let
    through no Transfer-Encoding, Upgrade or Proxy-Connection, and only "close" and
    "keep-alive" as Connection options: so what is left to do is to drop the other
    hop-by-hop fields (Connection, Keep-Alive, TE) and trim each value.
    """
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(event._lines)
    cdef Py_ssize_t start = event._lines_start
    cdef Py_ssize_t end = event._lines_end
    cdef Py_ssize_t nlen
    cdef FieldLine line
    while start < end:
        read_field_line(p, start, end, &line)
        nlen = line.colon - start
        if _classify(p + start, nlen) >= C_HOP:
            start = line.next
            continue
        if nlen == 5 and _ieq(p + start, b"close", 5):
            return 0  # dropped when a Connection field says "close": the general loop knows
        _put_field(o, <const char *>p + start, nlen, <const char *>p + line.value_start,
                   line.value_end - line.value_start)
        start = line.next
    return 1


cdef object _response_end(Out *o, Framing *f, object response, object status, object reason, int line_error,
                          object upgrade, object request_method, object client_version, object client_keep_alive,
                          object extra_headers):
    """The rest of the head after the received fields: the extra fields, framing and
    Connection; the head's bytes returned, how to frame what follows in ``f``."""
    cdef Response event = response if type(response) is Response else None
    for name, value in extra_headers:
        _field(o, name, value)

    # The length first: a str == str that is not one object is a PyUnicode_Compare call
    # compiled (Cython 3.3), and most requests are a GET.
    has_body = not ((len(request_method) == 4 and request_method == "HEAD") or status < 200
                    or status in (204, 304))
    keep_alive = client_keep_alive and (event.keep_alive if event is not None else response.keep_alive)
    chunked = False
    if status == 101:
        _field(o, "Connection", "upgrade")
        _field(o, "Upgrade", "" if upgrade is None else upgrade)
        if line_error:
            _raise_status_line(line_error, status, reason)
        f.keep_alive = f.chunked = f.has_body = False
        return _finish(o)
    if (event.chunked if event is not None else response.chunked):
        if client_version == "1.1":
            _field(o, "Transfer-Encoding", "chunked")
            chunked = has_body
        elif has_body:
            # HTTP/1.0 clients cannot read chunked: send the body raw, end with close.
            keep_alive = False
    elif (event.content_length if event is not None else response.content_length) is None and has_body:
        keep_alive = False  # close-delimited
    if not keep_alive:
        _field(o, "Connection", "close")
    elif client_version == "1.0":
        _field(o, "Connection", "keep-alive")
    if line_error:
        _raise_status_line(line_error, status, reason)
    f.keep_alive = keep_alive
    f.chunked = chunked
    f.has_body = has_body
    return _finish(o)


def response_head_for_client(
    response,
    *,
    request_method,
    client_version,
    client_keep_alive,
    extra_headers=(),
):
    """The response head to send to the client, and how to frame what follows."""
    cdef Framing f
    head = _response_bytes(&f, response, request_method, client_version, client_keep_alive, extra_headers)
    return _framing(head, f.keep_alive, f.chunked, f.has_body)


cdef class HeadWriter:
    """``request_head_for_member`` and ``response_head_for_client`` as C methods with
    positional arguments, for the compiled exchange (``lbcore/proxy/http.pxd`` holds
    one in a typed global): no keyword parsing, and no ResponseFraming made and read
    back by attribute; ``for_client`` leaves the framing in ``keep_alive`` and
    ``chunked``, read before the next call (one writer per worker, one thread)."""

    cpdef bytes for_member(self, request, policy, client_ip, default_host, strip_cookie, connection_headers,
                           connection_header_names):
        """``request_head_for_member(request, policy, client_ip, default_host=...,
        strip_cookie=..., connection_headers=..., connection_header_names=...)``."""
        return _request_bytes(request, policy, client_ip, default_host, strip_cookie, connection_headers,
                              connection_header_names)

    cpdef bytes for_client(self, response, request_method, client_version, client_keep_alive, extra_headers):
        """``response_head_for_client(...).head``; its ``keep_alive`` and ``chunked``
        are then this writer's."""
        cdef Framing f
        head = _response_bytes(&f, response, request_method, client_version, client_keep_alive, extra_headers)
        self.keep_alive = f.keep_alive
        self.chunked = f.chunked
        return head
