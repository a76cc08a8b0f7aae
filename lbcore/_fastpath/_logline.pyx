# cython: language_level=3, boundscheck=False, wraparound=False
"""Access-log lines: the compiled twin of ``lbcore.proxy.accesslog_format``'s formatters.

``format_text`` and ``format_json`` return, for every record, exactly the string the
pure functions return (the pure module is the reference; read its docstring for the
escaping rules and ``lbcore.proxy.accesslog`` for the layouts). What differs is how:

- escaping is a C loop over the string's code points against a 128-entry table per
  context (quoted, bare token, capture); a string with nothing to escape (the common
  case) is used as it is, no copy, no regex. One that needs escaping is written in
  two passes (measure, then fill) into a new ASCII string;
- a JSON string with nothing to escape is written between two quotes of the line
  itself; anything else goes to ``json.encoder.encode_basestring_ascii``, the very
  function the pure twin calls;
- the line is joined once (a Cython f-string: one allocation);
- a JSON duration (``.6f``) is written from integers in C when ``|d| < 4e9``, with
  the rounding Python's dtoa does (exact value, half to even; see ``_fixed6``),
  else by ``PyOS_double_to_string``, what ``float.__format__`` calls;
- timestamps: the same rounding as the pure ``_split`` (``round(t * 1000)``, half to
  even, floor ``divmod``) done in C, and the date text from the pure ``_second``
  (its ``lru_cache``), remembered here for the last second seen;
- an ``AccessRecord``'s fields are read from its slots (offsets learnt from its member
  descriptors at import), not through the generic attribute lookup;
- anything off the common types (a duration that is not a float, a value that is a
  ``str`` subclass or whose ``str()`` is one, a timestamp out of range) goes to the
  pure module's own helper, so the odd cases, exceptions included, behave the same.
"""

cimport cython
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.mem cimport PyMem_Free
from cpython.unicode cimport (
    PyUnicode_1BYTE_DATA,
    PyUnicode_DATA,
    PyUnicode_FromStringAndSize,
    PyUnicode_GET_LENGTH,
    PyUnicode_KIND,
    PyUnicode_New,
    PyUnicode_READ,
)
from libc.math cimport fabs, fma, isfinite, rint, round as c_round, signbit
from libc.string cimport memchr, memcmp, memcpy, strlen

from json.encoder import encode_basestring_ascii as _encode_json  # type: ignore[attr-defined]

from lbcore.proxy import accesslog_format as _pure

__all__ = ["IMPLEMENTATION", "Formatter", "RecordMaker", "format_json", "format_text", "iso_timestamp", "new_record",
           "syslog_frame"]

IMPLEMENTATION = "compiled"

cdef extern from "Python.h":
    # pystrtod.h: what float.__format__ calls for ".6f" (flags 0: no "#", no "z").
    char *PyOS_double_to_string(double val, char format_code, int precision, int flags, int *type) except NULL

cdef extern from *:
    """
    /* a * b rounded to a double, as Python's float multiplication gives it: never fused
       with a later addition into one fma (gcc's default -ffp-contract=fast may do that
       on a target with FMA instructions, and the tie tests below would then differ). */
    static double lbcore_logline_mul(double a, double b) { volatile double product = a * b; return product; }
    """
    double _mul "lbcore_logline_mul" (double a, double b) nogil

# -- reading a record -----------------------------------------------------------------------
# An AccessRecord is a slotted dataclass: each field is a member descriptor holding the
# offset of its slot. For a record of exactly that type the formatters read the slots
# directly (the generic attribute lookup costs ~150 instructions per field, 23 fields
# a line); for anything else, or a slot that is unset, ``getattr`` as the pure twin.

from cpython.object cimport PyObject

from cpython.ref cimport Py_INCREF, Py_XDECREF

from lbcore._fastpath._growbuf cimport grow_buffer
from lbcore._fastpath._slots cimport slot_at, slot_offset, slot_offsets, slot_or_getattr, store_slot

_FIELDS = ("accepted", "client_ip", "client_port", "listener", "acl", "pool", "member", "method", "target", "http_version", "host", "user_agent", "status", "bytes_in", "bytes_out", "t_tls", "t_request", "t_queue", "t_connect", "t_first_byte", "t_total", "retries", "termination", "tls_version", "tls_resumed", "sni", "mode")
cdef Py_ssize_t _offset[27]
cdef tuple _field_names = _FIELDS  # a C global: no module dictionary lookup per field read
cdef object _record_type = None  # AccessRecord once its slots are known
cdef enum:
    F_ACCEPTED = 0
    F_CLIENT_IP = 1
    F_CLIENT_PORT = 2
    F_LISTENER = 3
    F_ACL = 4
    F_POOL = 5
    F_MEMBER = 6
    F_METHOD = 7
    F_TARGET = 8
    F_HTTP_VERSION = 9
    F_HOST = 10
    F_USER_AGENT = 11
    F_STATUS = 12
    F_BYTES_IN = 13
    F_BYTES_OUT = 14
    F_T_TLS = 15
    F_T_REQUEST = 16
    F_T_QUEUE = 17
    F_T_CONNECT = 18
    F_T_FIRST_BYTE = 19
    F_T_TOTAL = 20
    F_RETRIES = 21
    F_TERMINATION = 22
    F_TLS_VERSION = 23
    F_TLS_RESUMED = 24
    F_SNI = 25
    F_MODE = 26


cdef _bind_record_slots():
    """Learn AccessRecord's slot offsets; leave the fast read off if any field is not a slot."""
    global _record_type
    from lbcore.proxy.accesslog import AccessRecord

    if slot_offsets(AccessRecord, _FIELDS, _offset):
        _record_type = AccessRecord


_bind_record_slots()
RECORD_SLOTS = _record_type is not None  # tests: the fast read is on


# -- making a record -------------------------------------------------------------------------
# The dataclass's generated __init__ is interpreted: ~0.5 us for a request's 24 fields.
# With the slots' offsets known, a new record's (empty) slots are filled directly, in
# field order, the missing ones from the defaults.

cdef Py_ssize_t _slot_count = 0
cdef Py_ssize_t _slot_offset[64]
cdef list _slot_defaults = []  # per field: its default, or _REQUIRED
cdef object _REQUIRED = object()
cdef Py_ssize_t _required = 0  # values a record needs: up to its last field without a default


cdef _bind_record_fields():
    """Learn every field's slot and default, in field order; leave new_record to the
    constructor if any field is not a plain slot set by __init__."""
    global _slot_count, _slot_defaults, _required
    import dataclasses

    from lbcore.proxy.accesslog import AccessRecord

    fields = dataclasses.fields(AccessRecord)
    if _record_type is None or len(fields) > 64 or AccessRecord.__new__ is not object.__new__:
        return  # (a record is made by its type's tp_alloc: object.__new__'s work)
    defaults = []
    cdef Py_ssize_t i, required = 0
    for i, field in enumerate(fields):
        _slot_offset[i] = slot_offset(AccessRecord, field.name)
        if _slot_offset[i] < 0 or not field.init or field.default_factory is not dataclasses.MISSING:
            return
        if field.default is dataclasses.MISSING:
            defaults.append(_REQUIRED)
            required = i + 1
        else:
            defaults.append(field.default)
    _slot_defaults = defaults
    _required = required
    _slot_count = len(fields)


_bind_record_fields()

cdef extern from *:
    """
    /* object.__new__(type) for a type whose __new__ is object's: its tp_alloc (zeroed
       slots, tracked by the collector when the type is), without the Python call. */
    static PyObject *lbcore_logline_alloc(PyObject *type) {
        return ((PyTypeObject *)type)->tp_alloc((PyTypeObject *)type, 0);
    }
    """
    object _object_new "lbcore_logline_alloc" (object type)


def new_record(*values):
    """``AccessRecord(*values)`` (positional, in field order)."""
    cdef Py_ssize_t n = len(values), i
    if _slot_count == 0 or n > _slot_count or n < _required:
        return _pure.new_record(*values)  # the constructor: its own errors
    record = _object_new(_record_type)
    for i in range(_slot_count):
        store_slot(record, _slot_offset[i], values[i] if i < n else _slot_defaults[i])
    return record


cdef enum:
    _MADE = 24  # the values RecordMaker.make takes: an HTTP request's (the engine's)

# make fills the slots: 24 fields or more, the ones after them all with defaults
cdef bint _maker_ready = _slot_count >= _MADE >= _required


cdef class RecordMaker:
    """``make(...)``: ``new_record`` of an HTTP request's 24 values, as a C method.

    The compiled engine holds one in a typed global (``lbcore/proxy/http.pxd``) and
    calls ``make`` directly: ``new_record(*values)`` is a Python call that packs 24
    values into a tuple and unpacks them again (~1k instructions a request).
    """

    cpdef make(self, accepted, started, client_ip, client_port, listener, acl, pool, member,
               method, target, http_version, host, user_agent, status, bytes_in, bytes_out,
               t_tls, t_request, t_queue, t_connect, t_first_byte, t_total, retries, termination):
        if not _maker_ready:
            return _pure.new_record(accepted, started, client_ip, client_port, listener, acl,
                                    pool, member, method, target, http_version, host,
                                    user_agent, status, bytes_in, bytes_out, t_tls, t_request,
                                    t_queue, t_connect, t_first_byte, t_total, retries,
                                    termination)
        record = _object_new(_record_type)
        store_slot(record, _slot_offset[0], accepted)
        store_slot(record, _slot_offset[1], started)
        store_slot(record, _slot_offset[2], client_ip)
        store_slot(record, _slot_offset[3], client_port)
        store_slot(record, _slot_offset[4], listener)
        store_slot(record, _slot_offset[5], acl)
        store_slot(record, _slot_offset[6], pool)
        store_slot(record, _slot_offset[7], member)
        store_slot(record, _slot_offset[8], method)
        store_slot(record, _slot_offset[9], target)
        store_slot(record, _slot_offset[10], http_version)
        store_slot(record, _slot_offset[11], host)
        store_slot(record, _slot_offset[12], user_agent)
        store_slot(record, _slot_offset[13], status)
        store_slot(record, _slot_offset[14], bytes_in)
        store_slot(record, _slot_offset[15], bytes_out)
        store_slot(record, _slot_offset[16], t_tls)
        store_slot(record, _slot_offset[17], t_request)
        store_slot(record, _slot_offset[18], t_queue)
        store_slot(record, _slot_offset[19], t_connect)
        store_slot(record, _slot_offset[20], t_first_byte)
        store_slot(record, _slot_offset[21], t_total)
        store_slot(record, _slot_offset[22], retries)
        store_slot(record, _slot_offset[23], termination)
        cdef Py_ssize_t i
        for i in range(_MADE, _slot_count):
            store_slot(record, _slot_offset[i], _slot_defaults[i])
        return record


cdef inline object _field(object record, int field):
    """``getattr(record, _FIELDS[field])``, from the slot when the record is an AccessRecord."""
    return slot_or_getattr(record, _record_type, _offset, _field_names, field)


# -- escaping -----------------------------------------------------------------------------------
# Per context, for each ASCII code: 1 = kept as is (the pure module's three regex classes).
cdef unsigned char _QUOTED_SAFE[128]  # [\x20\x21\x23-\x5b\x5d-\x7e]: inside "...", and JSON's kept set
cdef unsigned char _TOKEN_SAFE[128]  # [\x21\x23-\x5b\x5d-\x7e]: a bare field, no space
cdef unsigned char _CAPTURE_SAFE[128]  # [\x20\x21\x23-\x5b\x5d-\x7a\x7e]: inside {..|..}, no { | }


cdef void _init_tables():
    cdef int c
    for c in range(128):
        _QUOTED_SAFE[c] = 0x20 <= c <= 0x7e and c != 0x22 and c != 0x5c
        _TOKEN_SAFE[c] = _QUOTED_SAFE[c] and c != 0x20
        _CAPTURE_SAFE[c] = _QUOTED_SAFE[c] and c != 0x7b and c != 0x7c and c != 0x7d


_init_tables()

cdef const char *_HEX = b"0123456789abcdef"


cdef inline Py_ssize_t _first_unsafe(str s, const unsigned char *safe):
    """Index of the first character ``safe`` does not keep; -1 when there is none."""
    cdef Py_ssize_t i = 0
    cdef Py_UCS4 c
    for c in s:  # readies a legacy string; reads by kind
        if c >= 128 or not safe[c]:
            return i
        i += 1
    return -1


cdef inline Py_ssize_t _hex(unsigned char *out, Py_ssize_t j, unsigned int c, int digits):
    cdef int shift = (digits - 1) * 4
    while shift >= 0:
        out[j] = _HEX[(c >> shift) & 0xF]
        j += 1
        shift -= 4
    return j


cdef object _escape(str s, const unsigned char *safe):
    """``s`` itself when nothing needs escaping, else a new ASCII string: ``\\"``,
    ``\\\\``, ``\\xHH``, ``\\uHHHH``, ``\\UHHHHHHHH`` (the pure ``_escape_char``)."""
    cdef Py_ssize_t first = _first_unsafe(s, safe)
    if first < 0:
        return s
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(s)
    cdef int kind = PyUnicode_KIND(s)
    cdef void *data = PyUnicode_DATA(s)
    cdef Py_ssize_t size = first, k, j = 0
    cdef Py_UCS4 c
    for k in range(first, n):
        c = PyUnicode_READ(kind, data, k)
        if c < 128 and safe[c]:
            size += 1
        elif c == 0x22 or c == 0x5c:
            size += 2
        elif c <= 0xFF:
            size += 4
        elif c <= 0xFFFF:
            size += 6
        else:
            size += 10
    out = PyUnicode_New(size, 127)
    cdef unsigned char *o = <unsigned char *>PyUnicode_1BYTE_DATA(out)
    for k in range(n):
        c = PyUnicode_READ(kind, data, k)
        if c < 128 and safe[c]:
            o[j] = <unsigned char>c
            j += 1
        elif c == 0x22 or c == 0x5c:
            o[j] = 0x5c
            o[j + 1] = <unsigned char>c
            j += 2
        else:
            o[j] = 0x5c
            if c <= 0xFF:
                o[j + 1] = 0x78  # x
                j = _hex(o, j + 2, c, 2)
            elif c <= 0xFFFF:
                o[j + 1] = 0x75  # u
                j = _hex(o, j + 2, c, 4)
            else:
                o[j + 1] = 0x55  # U
                j = _hex(o, j + 2, c, 8)
    return out


cdef object _escape_any(object value, const unsigned char *safe, object pattern):
    """A value that is not exactly a ``str``: through ``str()`` as the pure twin does.
    A ``str`` subclass goes to the pure regex (which returns an exact ``str``)."""
    if not isinstance(value, str):
        value = str(value)
        if type(value) is str:
            return _escape(<str>value, safe)
    return pattern.sub(_pure._escape_char, value)


cdef inline object _quoted(object value):
    """The pure ``escape_text``: inside ``"..."``."""
    if type(value) is str:
        return _escape(<str>value, _QUOTED_SAFE)
    return _escape_any(value, _QUOTED_SAFE, _pure._QUOTED_UNSAFE)


cdef inline object _token(object value):
    """The pure ``_token``: a bare field, ``-`` when None or empty."""
    if value is None:
        return "-"
    if type(value) is str:
        if PyUnicode_GET_LENGTH(value) == 0:
            return "-"
        return _escape(<str>value, _TOKEN_SAFE)
    if value == "":
        return "-"
    return _escape_any(value, _TOKEN_SAFE, _pure._TOKEN_UNSAFE)


cdef inline object _capture(object value):
    """The pure ``_capture``: inside ``{..|..}``, empty when None."""
    if value is None:
        return ""
    if type(value) is str:
        return _escape(<str>value, _CAPTURE_SAFE)
    return _escape_any(value, _CAPTURE_SAFE, _pure._CAPTURE_UNSAFE)


# -- time ---------------------------------------------------------------------------------------
cdef tuple _MS_TEXT = tuple([f".{ms:03d}" for ms in range(1000)])
cdef tuple _MS_ISO = tuple([f".{ms:03d}Z" for ms in range(1000)])
cdef object _second = _pure._second  # (ISO date, haproxy date) of a whole second, lru_cache'd
cdef long long _last_second = 0
cdef tuple _last_pair = None  # _second(_last_second), None before the first


cdef inline tuple _second_pair(long long second):
    global _last_second, _last_pair
    if _last_pair is not None and second == _last_second:
        return _last_pair
    pair = _second(second)
    _last_pair = pair
    _last_second = second
    return pair


cdef inline double _round(double x) noexcept:
    """``round(x)`` as Python's float.__round__ does it: to the nearest, ties to even."""
    cdef double r = c_round(x)  # half away from zero ...
    if fabs(x - r) == 0.5:
        r = 2.0 * c_round(x / 2.0)  # ... then a tie goes to the even neighbour
    return r


cdef inline bint _split(object timestamp, long long *second, int *ms):
    """The pure ``_split`` for a float in range: ``divmod(round(t * 1000), 1000)``.
    False: not a float, or out of range; the caller uses the pure helper."""
    if type(timestamp) is not float:
        return False
    cdef double x = _mul(PyFloat_AS_DOUBLE(timestamp), 1000.0)
    if not isfinite(x):
        return False
    cdef double r = _round(x)
    if not -9.0e15 < r < 9.0e15:
        return False
    cdef long long n = <long long>r
    second[0] = n // 1000  # cdivision off: Python's floor division and modulo
    ms[0] = <int>(n % 1000)
    return True


# -- numbers ------------------------------------------------------------------------------------


cdef object _fixed6(double d):
    """``f"{d:.6f}"`` for a finite ``|d| < 4e9``; None for any other.

    Python writes the exact binary value of ``d`` rounded to 6 decimals, half to even
    (dtoa). Here: ``p = |d| * 1e6`` rounded, ``n = rint(p)``; the exact product is
    ``p + e`` with ``e = fma(|d|, 1e6, -p)`` exactly and ``|e| <= ulp(p) / 2``. As
    ``p < 2**52``, ``p - n`` is a multiple of ``ulp(p)`` (so is 0.5): unless ``p`` is a
    half-integer the exact product rounds to ``n`` too; when it is, ``e`` decides (0:
    a true tie, ``rint`` already chose the even one). The sign is ``d``'s, even when
    the digits are all 0 (``-0.000000``), as Python writes it."""
    cdef double a = fabs(d), p, r, e
    cdef unsigned long long n
    cdef char buf[32]
    cdef int i = 32, k
    if a < 1e-7:  # the product is below 0.1
        n = 0
    elif a < 4.0e9:
        p = _mul(a, 1e6)
        r = rint(p)
        n = <unsigned long long>r
        r = p - r
        if r == 0.5 or r == -0.5:
            e = fma(a, 1e6, -p)
            if r == 0.5 and e > 0.0:
                n += 1
            elif r == -0.5 and e < 0.0:
                n -= 1
    else:
        return None
    for k in range(6):
        i -= 1
        buf[i] = <char>(48 + n % 10)
        n //= 10
    i -= 1
    buf[i] = c'.'
    while True:
        i -= 1
        buf[i] = <char>(48 + n % 10)
        n //= 10
        if n == 0:
            break
    if signbit(d):
        i -= 1
        buf[i] = c'-'
    return PyUnicode_FromStringAndSize(buf + i, 32 - i)


cdef object _jf(object value):
    """The pure ``_jf``: ``f"{value:.6f}"``, null for None, NaN or infinity."""
    cdef double d
    cdef char *text
    if value is None:
        return "null"
    if type(value) is float:
        d = PyFloat_AS_DOUBLE(value)
        if not isfinite(d):
            return "null"
        fixed = _fixed6(d)
        if fixed is not None:
            return fixed
        text = PyOS_double_to_string(d, c'f', 6, 0, NULL)
        try:
            return PyUnicode_FromStringAndSize(text, <Py_ssize_t>strlen(text))
        finally:
            PyMem_Free(text)
    return _pure._jf(value)


cdef inline object _ji(object value):
    return "null" if value is None else int(value)


cdef inline object _jb(object value):
    return "null" if value is None else ("true" if value else "false")


cdef object _js(object value, bint *quoted):
    """The pure ``_js``. A string with nothing to escape is returned as it is with
    ``quoted`` set: the caller writes the quotes."""
    quoted[0] = False
    if value is None:
        return "null"
    if type(value) is str:
        if _first_unsafe(<str>value, _QUOTED_SAFE) < 0:  # JSON keeps the same set as "..."
            quoted[0] = True
            return value
        return _encode_json(value)
    return _encode_json(value if isinstance(value, str) else str(value))


cdef inline object _q(bint quoted):
    return '"' if quoted else ""


# -- the formatters -----------------------------------------------------------------------------


# -- one buffer per line -------------------------------------------------------------------------
# The text line is written into one C buffer, its numbers as digits, and made into a
# str once: no piece becomes a str of its own, and no tuple of ~35 pieces is joined.
# Every piece is escaped to ASCII but the str() of an odd value (a port that is not an
# int, say), written as the pure twin writes it; from such a piece on, the line is
# kept as a list of strs and joined.

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object o)

cdef enum:
    _LINE_STACK = 512  # bytes: a request's line fits; a longer one moves to the heap


cdef struct _Line:
    char *data
    Py_ssize_t size
    Py_ssize_t capacity
    PyObject *pieces  # a list once a piece was not ASCII: the line goes on as strs, joined at the end
    char stack[_LINE_STACK]


cdef inline void _line_init(_Line *line) noexcept:
    line.data = line.stack
    line.size = 0
    line.capacity = _LINE_STACK
    line.pieces = NULL


cdef inline void _line_free(_Line *line) noexcept:
    if line.data != line.stack:
        PyMem_Free(line.data)
    line.data = line.stack
    Py_XDECREF(line.pieces)
    line.pieces = NULL


cdef int _line_grow(_Line *line, Py_ssize_t need) except -1:
    return grow_buffer(&line.data, &line.capacity, line.size, need, line.data != line.stack)


cdef int _line_to_pieces(_Line *line) except -1:
    """A piece that is not ASCII (only odd values, whose str() is written as it is, do
    that): what was written so far becomes the first str of a list of pieces."""
    pieces = [PyUnicode_FromStringAndSize(line.data, line.size)]
    Py_INCREF(pieces)
    line.pieces = <PyObject *>pieces
    return 0


cdef int _put_piece(_Line *line, str text) except -1:
    """Past a piece that was not ASCII: ``text`` goes to the list of pieces."""
    if line.pieces == NULL:
        _line_to_pieces(line)
    (<list>line.pieces).append(text)
    return 0


cdef inline int _put_chars(_Line *line, const char *chars, Py_ssize_t n) except -1:
    if line.pieces != NULL:
        return _put_piece(line, PyUnicode_FromStringAndSize(chars, n))
    if line.size + n > line.capacity:
        _line_grow(line, n)
    memcpy(line.data + line.size, chars, n)
    line.size += n
    return 0


cdef inline int _put_char(_Line *line, char c) except -1:
    if line.pieces == NULL and line.size < line.capacity:
        line.data[line.size] = c
        line.size += 1
        return 0
    return _put_chars(line, &c, 1)


cdef inline int _put(_Line *line, str text) except -1:
    """A str: its bytes when it is ASCII (stored one byte per character)."""
    if line.pieces == NULL and PyUnicode_IS_ASCII(text):
        return _put_chars(line, <const char *>PyUnicode_1BYTE_DATA(text), PyUnicode_GET_LENGTH(text))
    return _put_piece(line, text)


cdef int _put_digits(_Line *line, long long value) except -1:
    cdef char digits[24]
    cdef int i = 24
    cdef bint negative = value < 0
    cdef unsigned long long n = <unsigned long long>(-(value + 1)) + 1 if negative else <unsigned long long>value
    while True:
        i -= 1
        digits[i] = <char>(48 + n % 10)
        n //= 10
        if n == 0:
            break
    if negative:
        i -= 1
        digits[i] = c'-'
    return _put_chars(line, digits + i, 24 - i)


cdef object _line_str(_Line *line):
    if line.pieces != NULL:
        return "".join(<list>line.pieces)
    out = PyUnicode_New(line.size, 127)
    memcpy(PyUnicode_1BYTE_DATA(out), line.data, line.size)
    return out


cdef inline bint _c_integer(object value, long long *out):
    """``value`` an int that fits a C long long: ``f"{value}"`` is its digits."""
    cdef int overflow = 0
    if type(value) is not int:
        return False
    out[0] = PyLong_AsLongLongAndOverflow(value, &overflow)
    return not overflow


cdef inline bint _c_ms(object seconds, long long *out):
    """The pure ``_ms`` of None or a float, when C computes it (as ``_ms`` does)."""
    cdef double d, x, r
    if seconds is None:
        out[0] = -1
        return True
    if type(seconds) is not float:
        return False
    d = PyFloat_AS_DOUBLE(seconds)
    if not isfinite(d):
        out[0] = -1
        return True
    x = _mul(d, 1000.0)
    if not isfinite(x):
        return False
    r = _round(x)
    if r <= 0.0:
        out[0] = 0
        return True
    if r < 9.0e18:
        out[0] = <long long>r
        return True
    return False


cdef inline object _ms_of(object record, int field, long long *out):
    """The record's duration ``field`` in haproxy's milliseconds: None with the number
    in ``out`` when C computes it, else the text the joined formatter writes."""
    value = _field(record, field)
    if _c_ms(value, out):
        return None
    return f"{_pure._ms(value)}"  # whatever C does not take, the reference decides (or raises)


cdef inline object _int_of(object value, long long *out):
    """``int(value)``: None with the number in ``out`` when it fits, else its text."""
    value = int(value)
    if _c_integer(value, out):
        return None
    return f"{value}"


cdef inline int _put_number(_Line *line, long long value, object text) except -1:
    """A number of the line: ``value`` when ``text`` is None (the common case), else
    ``text``, what the joined formatter writes for it."""
    if text is None:
        return _put_digits(line, value)
    return _put(line, <str>text)


# -- a request's line in one pass ----------------------------------------------------------
# The records the engine makes are all alike: an AccessRecord whose strings are ASCII
# with nothing to escape, whose numbers are ints and whose durations are floats or None.
# _text_line_fast writes such a record's line with no piece made or looked at twice:
# the slots read as they are, each piece checked and measured first, the buffer grown
# once, then the bytes copied. Any other record, or any piece off that shape, leaves the
# line untouched and goes to _text_line, which decides every odd case (and raises where
# the pure twin does). The pieces are read in _text_line's order, so a record that
# makes _text_line raise is one this path has already given up on, or one on which it
# raises the same (only the date, from the pure ``_second``, can).

cdef inline Py_ssize_t _plain(object value, const unsigned char *safe) noexcept:
    """``len(value)`` when it is an exact ``str``, ASCII, every character one ``safe``
    keeps (escaping leaves it as it is); else -1."""
    cdef const unsigned char *data
    cdef Py_ssize_t i, n
    if type(value) is not str or not PyUnicode_IS_ASCII(value):
        return -1
    n = PyUnicode_GET_LENGTH(value)
    data = <const unsigned char *>PyUnicode_1BYTE_DATA(value)
    for i in range(n):
        if not safe[data[i]]:
            return -1
    return n


cdef inline Py_ssize_t _plain_or_empty(object value, const unsigned char *safe) noexcept:
    """``_plain``, with None as an empty string (0)."""
    return 0 if value is None else _plain(value, safe)


cdef inline object _slot(object record, int field):
    """The record's ``field``, read from its slot: for an AccessRecord whose slots
    ``_text_line_fast`` has checked are all set."""
    return <object>slot_at(record, _offset[field])[0]


cdef inline char *_copy(char *p, object text, Py_ssize_t n) noexcept:
    """``text``'s ``n`` bytes (none, and not read, when ``n`` is 0: ``text`` may be None)."""
    if n:
        memcpy(p, PyUnicode_1BYTE_DATA(text), n)
    return p + n


cdef inline char *_copy_or(char *p, object text, Py_ssize_t n, const char *otherwise, Py_ssize_t m) noexcept:
    """``text`` (``n`` bytes), or ``otherwise`` when it is empty."""
    if n == 0:
        memcpy(p, otherwise, m)
        return p + m
    return _copy(p, text, n)


@cython.cdivision(True)
cdef inline char *_decimal(char *p, long long value) noexcept:
    cdef char digits[24]
    cdef int i = 24
    cdef unsigned long long n
    if value < 0:
        p[0] = c'-'
        p += 1
        n = <unsigned long long>(-(value + 1)) + 1
    else:
        n = <unsigned long long>value
    while True:
        i -= 1
        digits[i] = <char>(48 + n % 10)
        n = n // 10
        if n == 0:
            break
    memcpy(p, digits + i, 24 - i)
    return p + (24 - i)


cdef enum:
    _NUMBER_ROOM = 21  # the widest long long, sign included
    _FIXED_ROOM = 64  # the line's delimiters and its constant pieces


cdef bint _text_line_fast(_Line *line, object r) except -1:
    """``_text_line`` of an HTTP record as the engine makes it; False (nothing written)
    for any other."""
    cdef long long port, second, n_tq, n_tw, n_tc, n_tr, n_ta, n_status, n_bytes, n_retries
    cdef int ms, field
    cdef Py_ssize_t n_ip, n_date, n_listener, n_pool, n_member, n_method = 0, n_target = 0, n_version = 0
    cdef Py_ssize_t n_term, n_acl, n_host, n_ua, need
    cdef bint bracket, version_prefix = False
    cdef char *p
    if line.pieces != NULL or type(r) is not _record_type:
        return False
    for field in range(27):
        if slot_at(r, _offset[field])[0] == NULL:
            return False  # an unset slot: _text_line reads by getattr (and raises if it needs it)
    # client:port [date] listener pool/member
    ip = _slot(r, F_CLIENT_IP)
    n_ip = _plain(ip, _TOKEN_SAFE)
    if n_ip <= 0 or not _c_integer(_slot(r, F_CLIENT_PORT), &port):
        return False
    bracket = memchr(PyUnicode_1BYTE_DATA(ip), c':', n_ip) != NULL
    if not _split(_slot(r, F_ACCEPTED), &second, &ms):
        return False
    date = _second_pair(second)[1]
    n_date = _plain(date, _QUOTED_SAFE)
    if n_date < 0:
        return False
    listener = _slot(r, F_LISTENER)
    n_listener = _plain_or_empty(listener, _TOKEN_SAFE)
    pool = _slot(r, F_POOL)
    n_pool = _plain_or_empty(pool, _TOKEN_SAFE)
    member = _slot(r, F_MEMBER)
    n_member = _plain_or_empty(member, _TOKEN_SAFE)
    mode = _slot(r, F_MODE)
    if n_listener < 0 or n_pool < 0 or n_member < 0 or type(mode) is not str or (
            PyUnicode_GET_LENGTH(mode) == 3 and mode == "tcp"):
        return False
    # "method target version" (or <BADREQ>)
    method = _slot(r, F_METHOD)
    n_method = _plain_or_empty(method, _QUOTED_SAFE)
    if n_method < 0:
        return False
    if n_method:
        target = _slot(r, F_TARGET)
        version = _slot(r, F_HTTP_VERSION)
        n_target = _plain(target, _QUOTED_SAFE)
        n_version = _plain_or_empty(version, _QUOTED_SAFE)
        if n_target < 0 or n_version < 0:
            return False
        version_prefix = n_version < 5 or memcmp(PyUnicode_1BYTE_DATA(version), b"HTTP/", 5) != 0
    else:
        target = version = None
    # Tq/Tw/Tc/Tr/Ta status bytes_out - - TERM retries acl {host|ua}
    status = _slot(r, F_STATUS)
    if status is None:
        n_status = -1
    elif not _c_integer(status, &n_status):
        return False
    if not (_c_ms(_slot(r, F_T_REQUEST), &n_tq)
            and _c_ms(_slot(r, F_T_QUEUE), &n_tw)
            and _c_ms(_slot(r, F_T_CONNECT), &n_tc)
            and _c_ms(_slot(r, F_T_FIRST_BYTE), &n_tr)
            and _c_ms(_slot(r, F_T_TOTAL), &n_ta)
            and _c_integer(_slot(r, F_BYTES_OUT), &n_bytes)
            and _c_integer(_slot(r, F_RETRIES), &n_retries)):
        return False
    term = _slot(r, F_TERMINATION)
    n_term = _plain_or_empty(term, _TOKEN_SAFE)
    acl = _slot(r, F_ACL)
    n_acl = _plain_or_empty(acl, _TOKEN_SAFE)
    host = _slot(r, F_HOST)
    n_host = _plain_or_empty(host, _CAPTURE_SAFE)
    ua = _slot(r, F_USER_AGENT)
    n_ua = _plain_or_empty(ua, _CAPTURE_SAFE)
    if n_term < 0 or n_acl < 0 or n_host < 0 or n_ua < 0:
        return False

    need = (n_ip + n_date + n_listener + n_pool + n_member + n_method + n_target + n_version + n_term
            + n_acl + n_host + n_ua + 9 * _NUMBER_ROOM + _FIXED_ROOM)
    if line.size + need > line.capacity:
        _line_grow(line, need)
    p = line.data + line.size
    if bracket:
        p[0] = c'['
        p = _copy(p + 1, ip, n_ip)
        p[0] = c']'
        p += 1
    else:
        p = _copy(p, ip, n_ip)
    p[0] = c':'
    p = _decimal(p + 1, port)
    p[0] = c' '
    p[1] = c'['
    p = _copy(p + 2, date, n_date)
    p = _copy(p, _MS_TEXT[ms], 4)
    p[0] = c']'
    p[1] = c' '
    p = _copy_or(p + 2, listener, n_listener, b"-", 1)
    p[0] = c' '
    p = _copy_or(p + 1, pool, n_pool, b"<NOPOOL>", 8)
    p[0] = c'/'
    p = _copy_or(p + 1, member, n_member, b"<NOSRV>", 7)
    p[0] = c' '
    p = _decimal(p + 1, n_tq)
    p[0] = c'/'
    p = _decimal(p + 1, n_tw)
    p[0] = c'/'
    p = _decimal(p + 1, n_tc)
    p[0] = c'/'
    p = _decimal(p + 1, n_tr)
    p[0] = c'/'
    p = _decimal(p + 1, n_ta)
    p[0] = c' '
    p = _decimal(p + 1, n_status)
    p[0] = c' '
    p = _decimal(p + 1, n_bytes)
    memcpy(p, b" - - ", 5)
    p = _copy_or(p + 5, term, n_term, b"-", 1)
    p[0] = c' '
    p = _decimal(p + 1, n_retries)
    p[0] = c' '
    p = _copy_or(p + 1, acl, n_acl, b"-", 1)
    p[0] = c' '
    p[1] = c'{'
    p = _copy(p + 2, host, n_host)
    p[0] = c'|'
    p = _copy(p + 1, ua, n_ua)
    memcpy(p, b"} \"", 3)
    p += 3
    if n_method == 0:
        memcpy(p, b"<BADREQ>", 8)
        p += 8
    else:
        p = _copy(p, method, n_method)
        p[0] = c' '
        p = _copy(p + 1, target, n_target)
        p[0] = c' '
        p += 1
        if version_prefix:
            memcpy(p, b"HTTP/", 5)
            p += 5
        p = _copy(p, version, n_version)
    p[0] = c'"'
    line.size = (p + 1) - line.data
    return True


def _plain_text_line(record):
    """Tests: the line ``_text_line_fast`` writes for ``record``, None when it leaves
    the record to ``_text_line``."""
    cdef _Line line
    _line_init(&line)
    try:
        if not _text_line_fast(&line, record):
            return None
        return _line_str(&line)
    finally:
        _line_free(&line)


cdef int _text_line(_Line *line, object r) except -1:
    """format_text's line into ``line``: the joined formatter's pieces, evaluated in its
    order (a malformed record fails at the same field), written as they come or, for
    the ones the layout puts later, held until then."""
    if _text_line_fast(line, r):
        return 0
    cdef long long second, port_n = 0, n_tw = 0, n_tc = 0, n_tt = 0, n_tq = 0, n_tr = 0, n_ta = 0
    cdef long long n_status = 0, n_bytes = 0, n_retries = 0
    cdef int ms
    port_t = status_t = None
    ip = _token(_field(r, F_CLIENT_IP))
    port = _field(r, F_CLIENT_PORT)
    if not _c_integer(port, &port_n):
        port_t = f"{port}"
    accepted = _field(r, F_ACCEPTED)
    if _split(accepted, &second, &ms):
        date = _second_pair(second)[1]
        millis = _MS_TEXT[ms]
    else:
        date = _pure.text_timestamp(accepted)
        millis = ""
    listener = _token(_field(r, F_LISTENER))
    pool = _token(_field(r, F_POOL) or "<NOPOOL>")
    member = _token(_field(r, F_MEMBER) or "<NOSRV>")
    # client:port [date] listener pool/member
    if ":" in <str>ip:
        _put_char(line, c'[')
        _put(line, <str>ip)
        _put_chars(line, b"]:", 2)
    else:
        _put(line, <str>ip)
        _put_char(line, c':')
    _put_number(line, port_n, port_t)
    _put_chars(line, b" [", 2)
    _put(line, <str>date)
    _put(line, <str>millis)
    _put_chars(line, b"] ", 2)
    _put(line, <str>listener)
    _put_char(line, c' ')
    _put(line, <str>pool)
    _put_char(line, c'/')
    _put(line, <str>member)
    _put_char(line, c' ')
    if _field(r, F_MODE) == "tcp":
        tw_t = _ms_of(r, F_T_QUEUE, &n_tw)
        tc_t = _ms_of(r, F_T_CONNECT, &n_tc)
        tt_t = _ms_of(r, F_T_TOTAL, &n_tt)
        bytes_t = _int_of(_field(r, F_BYTES_OUT), &n_bytes)
        term = _token(_field(r, F_TERMINATION))
        retries_t = _int_of(_field(r, F_RETRIES), &n_retries)
        # Tw/Tc/Tt bytes_out TERM retries
        _put_number(line, n_tw, tw_t)
        _put_char(line, c'/')
        _put_number(line, n_tc, tc_t)
        _put_char(line, c'/')
        _put_number(line, n_tt, tt_t)
        _put_char(line, c' ')
        _put_number(line, n_bytes, bytes_t)
        _put_char(line, c' ')
        _put(line, <str>term)
        _put_char(line, c' ')
        _put_number(line, n_retries, retries_t)
        return 0
    if _field(r, F_METHOD):
        method = _quoted(_field(r, F_METHOD))
        target = _quoted(_field(r, F_TARGET))
        version = _quoted(_field(r, F_HTTP_VERSION) or "")
    else:
        method = target = version = None
    value = _field(r, F_STATUS)
    if value is None:
        n_status = -1
    else:
        status_t = _int_of(value, &n_status)
    tq_t = _ms_of(r, F_T_REQUEST, &n_tq)
    tw_t = _ms_of(r, F_T_QUEUE, &n_tw)
    tc_t = _ms_of(r, F_T_CONNECT, &n_tc)
    tr_t = _ms_of(r, F_T_FIRST_BYTE, &n_tr)
    ta_t = _ms_of(r, F_T_TOTAL, &n_ta)
    bytes_t = _int_of(_field(r, F_BYTES_OUT), &n_bytes)
    term = _token(_field(r, F_TERMINATION))
    retries_t = _int_of(_field(r, F_RETRIES), &n_retries)
    acl = _token(_field(r, F_ACL))
    host = _capture(_field(r, F_HOST))
    user_agent = _capture(_field(r, F_USER_AGENT))
    # Tq/Tw/Tc/Tr/Ta status bytes_out - - TERM retries acl {host|ua} "request"
    _put_number(line, n_tq, tq_t)
    _put_char(line, c'/')
    _put_number(line, n_tw, tw_t)
    _put_char(line, c'/')
    _put_number(line, n_tc, tc_t)
    _put_char(line, c'/')
    _put_number(line, n_tr, tr_t)
    _put_char(line, c'/')
    _put_number(line, n_ta, ta_t)
    _put_char(line, c' ')
    _put_number(line, n_status, status_t)
    _put_char(line, c' ')
    _put_number(line, n_bytes, bytes_t)
    _put_chars(line, b" - - ", 5)
    _put(line, <str>term)
    _put_char(line, c' ')
    _put_number(line, n_retries, retries_t)
    _put_char(line, c' ')
    _put(line, <str>acl)
    _put_chars(line, b" {", 2)
    _put(line, <str>host)
    _put_char(line, c'|')
    _put(line, <str>user_agent)
    _put_chars(line, b"} \"", 3)
    if method is None:
        _put_chars(line, b"<BADREQ>", 8)
    else:
        _put(line, <str>method)
        _put_char(line, c' ')
        _put(line, <str>target)
        _put_char(line, c' ')
        if not (<str>version).startswith("HTTP/"):
            _put_chars(line, b"HTTP/", 5)
        _put(line, <str>version)
    _put_char(line, c'"')
    return 0


def format_text(record, worker=0):
    """haproxy's httplog layout (tcplog for ``mode == "tcp"``); see ``lbcore.proxy.accesslog``."""
    return _text_message(record)


cdef object _text_message(record):
    cdef _Line line
    _line_init(&line)
    try:
        _text_line(&line, record)
        return _line_str(&line)
    finally:
        _line_free(&line)


def syslog_frame(record, worker, str prefix, str middle, line_format):
    """``prefix`` + the record's RFC 5424 timestamp + ``middle`` + its line
    (``line_format(record, worker)``): a syslog message. The text line is written into
    the same buffer as the frame."""
    if line_format is not format_text:
        return f"{prefix}{iso_timestamp(record.accepted)}{middle}{line_format(record, worker)}"
    return _text_frame(record, prefix, middle)


cdef object _text_frame(record, str prefix, str middle):
    """A syslog message around the record's text line, all written into one buffer."""
    cdef _Line line
    cdef long long second
    cdef int ms
    _line_init(&line)
    try:
        _put(&line, prefix)
        accepted = _field(record, F_ACCEPTED)
        if _split(accepted, &second, &ms):
            _put(&line, <str>_second_pair(second)[0])
            _put(&line, <str>_MS_ISO[ms])
        else:
            _put(&line, <str>_pure.iso_timestamp(accepted))
        _put(&line, middle)
        _text_line(&line, record)
        return _line_str(&line)
    finally:
        _line_free(&line)


def iso_timestamp(timestamp):
    """``2024-05-01T12:00:00.123Z`` (UTC, milliseconds): the pure ``iso_timestamp``
    (the RFC 5424 frame of every syslog line)."""
    cdef long long second
    cdef int ms
    if _split(timestamp, &second, &ms):
        return _second_pair(second)[0] + _MS_ISO[ms]
    return _pure.iso_timestamp(timestamp)


def format_json(record, worker=0):
    """One JSON object, keys in ``JSON_KEYS`` order; durations in seconds."""
    return _json_line(record, worker)


cdef object _json_line(record, worker):
    cdef long long second
    cdef int ms
    cdef bint q
    r = record
    accepted = _field(r, F_ACCEPTED)
    if _split(accepted, &second, &ms):
        timestamp = _second_pair(second)[0]
        millis = _MS_ISO[ms]
    else:
        timestamp = _pure.iso_timestamp(accepted)
        millis = ""
    worker_ = int(worker)
    mode = _js(_field(r, F_MODE), &q)
    q_mode = _q(q)
    listener = _js(_field(r, F_LISTENER), &q)
    q_listener = _q(q)
    client_ip = _js(_field(r, F_CLIENT_IP), &q)
    q_client_ip = _q(q)
    client_port = _ji(_field(r, F_CLIENT_PORT))
    sni = _js(_field(r, F_SNI), &q)
    q_sni = _q(q)
    tls_version = _js(_field(r, F_TLS_VERSION), &q)
    q_tls_version = _q(q)
    tls_resumed = _jb(_field(r, F_TLS_RESUMED))
    acl = _js(_field(r, F_ACL), &q)
    q_acl = _q(q)
    pool = _js(_field(r, F_POOL), &q)
    q_pool = _q(q)
    member = _js(_field(r, F_MEMBER), &q)
    q_member = _q(q)
    method = _js(_field(r, F_METHOD) or None, &q)
    q_method = _q(q)
    target = _js(_field(r, F_TARGET) or None, &q)
    q_target = _q(q)
    http_version = _js(_field(r, F_HTTP_VERSION) or None, &q)
    q_http_version = _q(q)
    host = _js(_field(r, F_HOST), &q)
    q_host = _q(q)
    user_agent = _js(_field(r, F_USER_AGENT), &q)
    q_user_agent = _q(q)
    status = _ji(_field(r, F_STATUS))
    bytes_in = _ji(_field(r, F_BYTES_IN))
    bytes_out = _ji(_field(r, F_BYTES_OUT))
    retries = _ji(_field(r, F_RETRIES))
    termination = _js(_field(r, F_TERMINATION), &q)
    q_termination = _q(q)
    t_tls = _jf(_field(r, F_T_TLS))
    t_request = _jf(_field(r, F_T_REQUEST))
    t_queue = _jf(_field(r, F_T_QUEUE))
    t_connect = _jf(_field(r, F_T_CONNECT))
    t_first_byte = _jf(_field(r, F_T_FIRST_BYTE))
    t_total = _jf(_field(r, F_T_TOTAL))
    return (
        f'{{"timestamp":"{timestamp}{millis}","worker":{worker_},"mode":{q_mode}{mode}{q_mode},'
        f'"listener":{q_listener}{listener}{q_listener},"client_ip":{q_client_ip}{client_ip}{q_client_ip},'
        f'"client_port":{client_port},"sni":{q_sni}{sni}{q_sni},'
        f'"tls_version":{q_tls_version}{tls_version}{q_tls_version},"tls_resumed":{tls_resumed},'
        f'"acl":{q_acl}{acl}{q_acl},"pool":{q_pool}{pool}{q_pool},"member":{q_member}{member}{q_member},'
        f'"method":{q_method}{method}{q_method},"target":{q_target}{target}{q_target},'
        f'"http_version":{q_http_version}{http_version}{q_http_version},'
        f'"host":{q_host}{host}{q_host},"user_agent":{q_user_agent}{user_agent}{q_user_agent},'
        f'"status":{status},"bytes_in":{bytes_in},"bytes_out":{bytes_out},"retries":{retries},'
        f'"termination":{q_termination}{termination}{q_termination},'
        f'"t_tls":{t_tls},"t_request":{t_request},"t_queue":{t_queue},'
        f'"t_connect":{t_connect},"t_first_byte":{t_first_byte},"t_total":{t_total}}}'
    )


cdef class Formatter:
    """One log's records to messages, as the pure ``Formatter``
    (``lbcore.proxy.accesslog_format``): ``format_many`` formats a batch here, each
    record by C calls, where the flush called a closure and ``syslog_frame`` (argument
    parsing included) for each record."""

    cdef readonly bint json
    cdef readonly object worker
    cdef readonly str prefix, middle

    def __init__(self, bint json=False, worker=0, str prefix=None, str middle=None):
        if (prefix is None) != (middle is None):
            raise ValueError("a syslog frame needs both its prefix and its middle")
        self.json = json
        self.worker = worker
        self.prefix = prefix
        self.middle = middle

    cdef object _one(self, record):
        if self.json:
            if self.prefix is None:
                return _json_line(record, self.worker)
            return f"{self.prefix}{iso_timestamp(record.accepted)}{self.middle}{_json_line(record, self.worker)}"
        if self.prefix is None:
            return _text_message(record)
        return _text_frame(record, self.prefix, self.middle)

    def __call__(self, record):
        return self._one(record)

    def format_many(self, list records not None):
        cdef list messages = []
        cdef list failures = []
        for record in records:
            try:
                messages.append(self._one(record))
            except Exception as exc:  # one bad record must not take the batch with it
                failures.append((record, exc))
        return messages, failures
