# cython: language_level=3, boundscheck=False, wraparound=False
"""Simple HTTP/1.1 heads recognised without llhttp: the compiled twin.

Same interface and answers as ``_heads_py`` (read its docstring first: why,
and what "simple" means). The steps are the same, with the same names: find
the end of the head, read the start line, read the field lines (``_fields``,
``_connection``), decide Host, framing and keep-alive (``_keep_alive``). Where
the pure twin makes one C-level call per step (``find``, a regex built from
its character sets), this one runs typed C loops over the bytes object's
buffer, against 256-entry class tables built at import from the pure twin's
constants (so the two cannot disagree on a character set, a method or a field
name), and makes Python objects only for what it returns.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from cpython.unicode cimport PyUnicode_1BYTE_DATA, PyUnicode_DecodeLatin1, PyUnicode_GET_LENGTH
from libc.stdint cimport uint64_t
from libc.string cimport memchr, memcmp, memcpy

from lbcore._fastpath._events cimport Data, Request, Response
from lbcore._fastpath._fieldlines cimport word_has_ctl

from lbcore._fastpath import _heads_py as _pure

__all__ = ["IMPLEMENTATION", "HeadScanner", "make_data", "make_request", "make_response", "scan_request", "scan_response",
           "scan_response_event"]

IMPLEMENTATION = "compiled"

cdef enum:
    CR = 13
    LF = 10
    SP = 32
    HTAB = 9
    COLON = 58
    COMMA = 44
    # bits of _CLASS
    IS_TCHAR = 1
    IS_VALUE = 2
    IS_TARGET = 4
    IS_REASON = 8
    IS_DIGIT = 16
    # field kinds, as in _heads_py
    OTHER = 0
    HOST = 1
    CONTENT_LENGTH = 2
    CONNECTION = 3
    REFUSED = 4
    MAX_KINDS = 8
    MAX_METHODS = 8

assert (_pure.HOST, _pure.CONTENT_LENGTH, _pure.CONNECTION, _pure.REFUSED) == (
    HOST, CONTENT_LENGTH, CONNECTION, REFUSED)

cdef int MAX_LENGTH_DIGITS = _pure.MAX_LENGTH_DIGITS

# -- what is simple: tables from the pure twin's constants ---------------------------------

cdef unsigned char _CLASS[256]


cdef void _mark(bytes chars, unsigned char bit):
    cdef unsigned char c
    for c in chars:
        _CLASS[c] |= bit


_mark(_pure.TCHAR, IS_TCHAR)
_mark(_pure.FIELD_VALUE, IS_VALUE)
_mark(_pure.TARGET, IS_TARGET)
_mark(_pure.REASON, IS_REASON)
_mark(_pure.DIGIT, IS_DIGIT)


cdef struct Name:
    const unsigned char *chars  # lower-case; points into a bytes object kept in _KEEP
    Py_ssize_t size
    int kind

cdef struct KindTable:
    int count
    Name names[MAX_KINDS]

cdef KindTable _REQUEST_KINDS
cdef KindTable _RESPONSE_KINDS
cdef Name _METHOD_BYTES[MAX_METHODS]
cdef int _METHOD_COUNT = 0
_METHOD_STRS = []  # the str of _METHOD_BYTES[i], the very objects _heads_py returns
_KEEP = []  # the bytes objects the C tables point into


cdef void _table(KindTable *table, dict kinds):
    assert len(kinds) <= MAX_KINDS
    table.count = 0
    for text, kind in kinds.items():
        name = text.encode("ascii")
        _KEEP.append(name)
        table.names[table.count].chars = <const unsigned char *>PyBytes_AS_STRING(name)
        table.names[table.count].size = PyBytes_GET_SIZE(name)
        table.names[table.count].kind = kind
        table.count += 1


_table(&_REQUEST_KINDS, _pure.REQUEST_KINDS)
_table(&_RESPONSE_KINDS, _pure.RESPONSE_KINDS)
assert len(_pure.METHODS) <= MAX_METHODS
for _wire, _str in _pure.METHODS.items():
    _KEEP.append(_wire)
    _METHOD_BYTES[_METHOD_COUNT].chars = <const unsigned char *>PyBytes_AS_STRING(_wire)
    _METHOD_BYTES[_METHOD_COUNT].size = PyBytes_GET_SIZE(_wire)
    _METHOD_BYTES[_METHOD_COUNT].kind = OTHER  # unused: a method is known by its index
    _METHOD_STRS.append(_str)
    _METHOD_COUNT += 1

cdef str V11 = "1.1"
cdef str V10 = "1.0"


cdef struct Fields:
    Py_ssize_t size  # name + value (leading OWS off, trailing kept) + 4, as llhttp's path counts
    int hosts
    long long length  # -1: no Content-Length
    bint close  # a Connection "close" token
    bint keep_alive  # a Connection "keep-alive" token


# -- the events of a simple head ------------------------------------------------------------
# The compiled events (``_events``) have their fields in C: a simple head's event is
# allocated and its fields stored directly, without the constructor's argument parsing.
# Its checks (the version, the status range) hold by construction of the scans.


def make_request(str method, str target, tuple headers, str version, bint keep_alive, content_length):
    """The Request event of a simple head (what the llhttp path builds)."""
    return _make_request(method, target, headers, version, keep_alive, content_length)


cdef Request _make_request(str method, str target, tuple headers, str version, bint keep_alive, content_length):
    cdef Request event = Request.__new__(Request)
    event.method = method
    event.target = target
    event.headers = headers
    event.http_version = version
    event.keep_alive = keep_alive
    event.chunked = False
    event.content_length = content_length
    event.expect_continue = False
    event.upgrade = None
    return event


def make_response(int status, str reason, tuple headers, str version, bint keep_alive, content_length):
    """The Response event of a simple head (what the llhttp path builds)."""
    cdef Response event = Response.__new__(Response)
    event.status = status
    event.reason = reason
    event._headers = headers
    event.http_version = version
    event.keep_alive = keep_alive
    event.chunked = False
    event.content_length = content_length
    return event


def make_data(bytes data not None):
    """The Data event of body bytes (the readers make one per body piece)."""
    return _make_data(data)


cdef Data _make_data(bytes data):
    cdef Data event = Data.__new__(Data)
    event.data = data
    return event


# -- the scans -----------------------------------------------------------------------


def scan_request(bytes data not None, Py_ssize_t pos, Py_ssize_t max_request_line,
                 Py_ssize_t max_header_bytes, Py_ssize_t max_headers):
    """(method, target, headers, version, keep_alive, content_length, end) of a simple
    request head at ``data[pos:]``, or None."""
    return _scan_request(data, pos, max_request_line, max_header_bytes, max_headers)


cdef tuple _scan_request(bytes data, Py_ssize_t pos, Py_ssize_t max_request_line, Py_ssize_t max_header_bytes,
                         Py_ssize_t max_headers):
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t stop, eol, sp, i, m
    cdef str version
    cdef Fields fields
    if pos < 0 or pos >= n:
        return None
    stop = _find_head_end(p, pos, n)  # the head is complete, the CRLF CRLF ends at stop + 4
    if stop < 0:
        return None
    eol = _find_crlf(p, pos, stop + 2)  # end of the request line (<= stop)
    if eol + 2 - pos > max_request_line:
        return None
    sp = _find_byte(p, pos, eol, SP)
    m = _method(p, pos, sp) if sp > pos else -1
    if m < 0:
        return None
    if eol - pos < 9 or memcmp(p + eol - 9, b" HTTP/1.", 8) != 0:
        return None
    if p[eol - 1] == 0x31:  # "1"
        version = V11
    elif p[eol - 1] == 0x30:  # "0"
        version = V10
    else:
        return None
    # the target: line[sp + 1 : -9]
    if sp + 1 >= eol - 9 or p[sp + 1] != 0x2F:  # "/"
        return None
    for i in range(sp + 1, eol - 9):
        if not _CLASS[p[i]] & IS_TARGET:
            return None
    headers = []
    if _fields(p, eol, stop, max_headers, &_REQUEST_KINDS, headers, &fields) < 0:
        return None
    if fields.size > max_header_bytes:
        return None
    # RFC 9112 3.2: one Host in HTTP/1.1; HTTP/1.0 may go without.
    if fields.hosts != 1 and (version is V11 or fields.hosts > 1):
        return None
    return (
        _METHOD_STRS[m],
        _text(p + sp + 1, eol - 9 - sp - 1),
        tuple(headers),
        version,
        _keep_alive(version, fields.close, fields.keep_alive),
        None if fields.length < 0 else fields.length,
        stop + 4,
    )


cdef struct ResponseHead:
    int status
    bint v11  # HTTP/1.1, else 1.0
    Py_ssize_t eol  # the status line's CRLF
    Py_ssize_t stop  # the head's CRLF CRLF
    bint keep_alive
    long long length  # -1: none


cdef int _response_head(const unsigned char *p, Py_ssize_t n, Py_ssize_t pos, str method,
                        Py_ssize_t max_header_bytes, Py_ssize_t max_headers, list headers,
                        ResponseHead *head) except -2:
    """Read a simple response head at ``p[pos:n]`` into ``head`` (its fields appended
    to ``headers`` unless None); -1 if it is not simple."""
    cdef Py_ssize_t stop, eol, i
    cdef int status
    cdef Fields fields
    # The length first: Cython 3.3 makes a str == str that is not one object a call to
    # PyUnicode_Compare (~80 instructions), and most requests are a GET.
    if len(method) == 7 and method == "CONNECT":  # a 2xx starts a tunnel
        return -1
    if pos < 0 or pos >= n:
        return -1
    stop = _find_head_end(p, pos, n)
    if stop < 0 or stop + 4 - pos > max_header_bytes:
        return -1
    eol = _find_crlf(p, pos, stop + 2)  # end of the status line (<= stop)
    # "HTTP/1.x 200 "
    if eol - pos < 13 or memcmp(p + pos, b"HTTP/1.", 7) != 0 or p[pos + 8] != SP or p[pos + 12] != SP:
        return -1
    if p[pos + 7] == 0x31:
        head.v11 = True
    elif p[pos + 7] == 0x30:
        head.v11 = False
    else:
        return -1
    status = 0
    for i in range(pos + 9, pos + 12):
        if not _CLASS[p[i]] & IS_DIGIT:
            return -1
        status = status * 10 + (p[i] - 0x30)
    if not 200 <= status <= 599:  # 1xx (and 101) are for llhttp
        return -1
    for i in range(pos + 13, eol):
        if not _CLASS[p[i]] & IS_REASON:
            return -1
    if _fields(p, eol, stop, max_headers, &_RESPONSE_KINDS, headers, &fields) < 0:
        return -1
    # RFC 9112 6.3: no body after HEAD, 204, 304; else only Content-Length is
    # simple (a close-delimited body goes the llhttp path).
    if not ((len(method) == 4 and method == "HEAD") or status == 204 or status == 304) and fields.length < 0:
        return -1
    head.status = status
    head.eol = eol
    head.stop = stop
    head.keep_alive = _keep_alive(V11 if head.v11 else V10, fields.close, fields.keep_alive)
    head.length = fields.length
    return 0


def scan_response(bytes data not None, Py_ssize_t pos, str method, Py_ssize_t max_header_bytes,
                  Py_ssize_t max_headers):
    """(status, reason, headers, version, keep_alive, content_length, end) of a simple
    response head at ``data[pos:]`` answering ``method``, or None."""
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(data)
    cdef ResponseHead head
    headers = []
    if _response_head(p, PyBytes_GET_SIZE(data), pos, method, max_header_bytes, max_headers, headers, &head) < 0:
        return None
    return (
        head.status,
        _text(p + pos + 13, head.eol - pos - 13),
        tuple(headers),
        V11 if head.v11 else V10,
        head.keep_alive,
        None if head.length < 0 else head.length,
        head.stop + 4,
    )


def scan_response_event(bytes data not None, Py_ssize_t pos, str method, Py_ssize_t max_header_bytes,
                        Py_ssize_t max_headers):
    """(Response, end) of a simple response head at ``data[pos:]`` answering ``method``,
    or None: the event ``make_response`` makes of ``scan_response``'s answer.

    The event keeps the field lines as received (``data`` itself, no copy) and makes
    its ``headers`` tuple only if asked: the compiled proxy writes the lines it
    forwards straight from them (``_rewrite``).
    """
    return _scan_response_event(data, pos, method, max_header_bytes, max_headers)


cdef tuple _scan_response_event(bytes data, Py_ssize_t pos, str method, Py_ssize_t max_header_bytes,
                                Py_ssize_t max_headers):
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(data)
    cdef ResponseHead head
    if _response_head(p, PyBytes_GET_SIZE(data), pos, method, max_header_bytes, max_headers, None, &head) < 0:
        return None
    cdef Response event = Response.__new__(Response)
    event.status = head.status
    event.reason = _text(p + pos + 13, head.eol - pos - 13)
    event._lines = data
    event._lines_start = head.eol + 2
    event._lines_end = head.stop + 2
    event.http_version = V11 if head.v11 else V10
    event.keep_alive = head.keep_alive
    event.chunked = False
    event.content_length = None if head.length < 0 else head.length
    return event, head.stop + 4


# -- the parts -----------------------------------------------------------------------


# Recent short texts (a field name or value, a target, a reason): heads repeat them
# (Host, Server, Content-Type, keep-alive, "/", "OK", even Date within its second),
# and a str made once is shared (strings are immutable). A slot per hash of the bytes,
# the last text seen there kept; a hit costs the hash and one memcmp instead of a new
# str (and its deallocation). A str decoded from latin-1 keeps one byte per character,
# the bytes themselves, so the bytes compare with the cached str's data as they are.
cdef enum:
    _TEXT_SLOTS = 512  # a power of two
    _TEXT_MAX = 40  # longer texts are made each time (long values seldom repeat)

cdef PyObject *_texts[_TEXT_SLOTS]  # static storage: all NULL at import


cdef str _text(const unsigned char *s, Py_ssize_t n):
    """``s[:n].decode("latin-1")``, shared with an equal recent text."""
    cdef unsigned int h = 2166136261u  # FNV-1a
    cdef Py_ssize_t i
    cdef PyObject *cached
    if n > _TEXT_MAX:
        return PyUnicode_DecodeLatin1(<const char *>s, n, NULL)
    for i in range(n):
        h = (h ^ s[i]) * 16777619u
    h &= _TEXT_SLOTS - 1
    cached = _texts[h]
    if (cached != NULL and PyUnicode_GET_LENGTH(<str>cached) == n
            and memcmp(PyUnicode_1BYTE_DATA(<str>cached), s, n) == 0):
        return <str>cached
    text = PyUnicode_DecodeLatin1(<const char *>s, n, NULL)  # latin-1: one byte per character
    Py_INCREF(text)
    Py_XDECREF(_texts[h])
    _texts[h] = <PyObject *>text
    return text


cdef int _fields(const unsigned char *p, Py_ssize_t eol, Py_ssize_t stop, Py_ssize_t max_headers,
                 const KindTable *kinds, list headers, Fields *out) except -2:
    """The field lines between the start line's CRLF at ``eol`` and the CRLF CRLF at
    ``stop``, appended to ``headers`` (unless None); -1 if they are not simple."""
    cdef Py_ssize_t start, line_end, colon, lead, tail, i
    cdef Py_ssize_t count = 0
    cdef int kind
    cdef uint64_t word
    out.size = 0
    out.hosts = 0
    out.length = -1
    out.close = False
    out.keep_alive = False
    start = eol + 2
    while start < stop + 2:  # each line ends with a CRLF; the last one's is at stop
        count += 1
        if count > max_headers:
            return -1
        # One pass per line. A name of tchar up to the colon leaves no room for
        # obs-fold, CR or LF; then a value of FIELD_VALUE up to the line's CR, which
        # must be followed by LF, none for CTL, bare CR or LF, or obs-text. Neither
        # scan passes the CR at ``stop``.
        i = start
        while _CLASS[p[i]] & IS_TCHAR:
            i += 1
        if i == start or p[i] != COLON:
            return -1
        colon = i
        i += 1
        while True:
            # Eight bytes at a time while none is outside SP..~ (all FIELD_VALUE);
            # a word with one (HTAB, the CR, a bad byte) is read byte by byte.
            if i + 8 <= stop:
                memcpy(&word, p + i, 8)
                if not _outside_sp_to_tilde(word):
                    i += 8
                    continue
            if not _CLASS[p[i]] & IS_VALUE:
                break
            i += 1
        if p[i] != CR or p[i + 1] != LF:
            return -1
        line_end = i
        lead = colon + 1
        while lead < line_end and (p[lead] == SP or p[lead] == HTAB):
            lead += 1
        out.size += colon - start + line_end - lead + 4
        tail = line_end
        while tail > lead and (p[tail - 1] == SP or p[tail - 1] == HTAB):
            tail -= 1
        kind = _kind(p, start, colon, kinds)
        if kind != OTHER:
            if kind == HOST:
                out.hosts += 1
            elif kind == CONTENT_LENGTH:
                if out.length >= 0 or not 0 < tail - lead <= MAX_LENGTH_DIGITS:
                    return -1
                out.length = 0
                for i in range(lead, tail):
                    if not _CLASS[p[i]] & IS_DIGIT:
                        return -1
                    out.length = out.length * 10 + (p[i] - 0x30)
            elif kind == CONNECTION:
                if not _connection(p, lead, tail, out):
                    return -1
            else:
                return -1
        if headers is not None:
            headers.append((
                _text(p + start, colon - start),
                _text(p + lead, tail - lead),
            ))
        start = line_end + 2
    return 0


cdef bint _connection(const unsigned char *p, Py_ssize_t start, Py_ssize_t end, Fields *out) noexcept:
    """Note the tokens of one Connection value; False if one is not close or keep-alive."""
    cdef Py_ssize_t a, b, comma
    while start <= end:
        comma = _find_byte(p, start, end, COMMA)
        if comma < 0:
            comma = end
        a, b = start, comma
        while a < b and (p[a] == SP or p[a] == HTAB):
            a += 1
        while b > a and (p[b - 1] == SP or p[b - 1] == HTAB):
            b -= 1
        if _lower_eq(p + a, b - a, b"close", 5):
            out.close = True
        elif _lower_eq(p + a, b - a, b"keep-alive", 10):
            out.keep_alive = True
        elif b > a:
            return False
        start = comma + 1
    return True


cdef inline bint _keep_alive(str version, bint close, bint keep_alive):
    """RFC 9112 9.3, as ``_http1_headers.is_keep_alive``."""
    if close:
        return False
    return version is V11 or keep_alive


# -- byte helpers ----------------------------------------------------------------------


cdef Py_ssize_t _find_head_end(const unsigned char *p, Py_ssize_t pos, Py_ssize_t n) noexcept nogil:
    """data.find(b"\\r\\n\\r\\n", pos): the first LF that ends a CRLF CRLF."""
    cdef const unsigned char *hit
    cdef Py_ssize_t i = pos
    while i < n:
        hit = <const unsigned char *>memchr(p + i, LF, n - i)
        if hit == NULL:
            return -1
        i = hit - p
        if i - 3 >= pos and p[i - 1] == CR and p[i - 2] == LF and p[i - 3] == CR:
            return i - 3
        i += 1
    return -1


cdef inline Py_ssize_t _find_crlf(const unsigned char *p, Py_ssize_t start, Py_ssize_t end) noexcept nogil:
    """data.find(CRLF, start, end), for a range known to hold one."""
    cdef Py_ssize_t i = start
    while i + 1 < end:
        if p[i] == CR and p[i + 1] == LF:
            return i
        i += 1
    return -1


cdef inline bint _outside_sp_to_tilde(uint64_t x) noexcept nogil:
    """Some byte of x is below SP, is DEL or is above 0x7f (an exact "any" test)."""
    return word_has_ctl(x) or (x & 0x8080808080808080ULL) != 0


cdef inline Py_ssize_t _find_byte(const unsigned char *p, Py_ssize_t start, Py_ssize_t end,
                                  unsigned char c) noexcept nogil:
    cdef const unsigned char *hit
    if start >= end:
        return -1
    hit = <const unsigned char *>memchr(p + start, c, end - start)
    return -1 if hit == NULL else hit - p


cdef inline bint _lower_eq(const unsigned char *s, Py_ssize_t size, const char *lower,
                           Py_ssize_t lower_size) noexcept nogil:
    """s equals the lower-case ASCII ``lower``, ignoring case. ``c | 0x20`` folds a letter;
    of the bytes that can reach here (tchar, field values) it maps no other byte onto a
    lower-case letter or "-"."""
    cdef Py_ssize_t i
    if size != lower_size:
        return False
    for i in range(size):
        if (s[i] | 0x20) != <unsigned char>lower[i]:
            return False
    return True


cdef inline int _kind(const unsigned char *p, Py_ssize_t start, Py_ssize_t end, const KindTable *kinds) noexcept nogil:
    cdef int k
    for k in range(kinds.count):
        if _lower_eq(p + start, end - start, <const char *>kinds.names[k].chars, kinds.names[k].size):
            return kinds.names[k].kind
    return OTHER


cdef inline Py_ssize_t _method(const unsigned char *p, Py_ssize_t start, Py_ssize_t end) noexcept nogil:
    """The index of data[start:end] in METHODS, or -1."""
    cdef int k
    for k in range(_METHOD_COUNT):
        if end - start == _METHOD_BYTES[k].size and memcmp(p + start, _METHOD_BYTES[k].chars, end - start) == 0:
            return k
    return -1


# -- the same, as C methods ------------------------------------------------------------


cdef class HeadScanner:
    """The readers' scans and event makers as C methods: the compiled readers hold one
    in a typed global (``_http1_requests.pxd``, ``_http1_responses.pxd``), so a request
    or a response costs no Python call to the functions above (~200 instructions each,
    four a proxied request). The same answers as those functions."""

    cpdef tuple scan_request(self, bytes data, Py_ssize_t pos, Py_ssize_t max_request_line,
                             Py_ssize_t max_header_bytes, Py_ssize_t max_headers):
        if data is None:
            raise TypeError("data must be bytes, not None")
        return _scan_request(data, pos, max_request_line, max_header_bytes, max_headers)

    cpdef tuple scan_response_event(self, bytes data, Py_ssize_t pos, str method, Py_ssize_t max_header_bytes,
                                    Py_ssize_t max_headers):
        if data is None:
            raise TypeError("data must be bytes, not None")
        return _scan_response_event(data, pos, method, max_header_bytes, max_headers)

    cpdef Request make_request(self, str method, str target, tuple headers, str version, bint keep_alive,
                               content_length):
        return _make_request(method, target, headers, version, keep_alive, content_length)

    cpdef Data make_data(self, bytes data):
        if data is None:
            raise TypeError("data must be bytes, not None")
        return _make_data(data)
