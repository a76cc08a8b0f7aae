# cython: language_level=3
"""HTTP/1.1 events, the compiled twin: extension types with their fields in C.

The same classes as the pure twin's frozen dataclasses (``_events_py``, the reference;
``lbcore.l7._http1_events`` documents the events), with the same behaviour: the
constructor's arguments and checks (the same ``ValueError`` messages), ``==`` between
events of the same class field by field, ``hash`` of the fields, the dataclass
``repr``, ``FrozenInstanceError`` on assigning or deleting any attribute, and the
dataclass metadata (``__dataclass_fields__``, ``__match_args__``), so
``dataclasses.fields``, ``replace`` and ``is_dataclass`` work as on the pure ones.

Why: a frozen dataclass's ``__init__`` stores each field through
``object.__setattr__``, and every read is an attribute lookup. Here the compiled
readers (``_heads.make_request`` and the in-place compiled reader modules) fill the C
fields directly, and the compiled proxy (``http.pxd``) reads them as C fields.
Field types are checked where the pure twin only annotates: ``str`` fields take a
``str`` (or None), ``headers``/``trailers`` a tuple, ``status`` an int; the flags are
stored as booleans.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING
from cpython.unicode cimport PyUnicode_DecodeLatin1
from lbcore._fastpath._fieldlines cimport FieldLine, read_field_line

from dataclasses import FrozenInstanceError

from lbcore._fastpath import _events_py as _pure

__all__ = ["IMPLEMENTATION", "Data", "EndOfMessage", "Headers", "InformationalResponse", "Request", "Response"]

IMPLEMENTATION = "compiled"
Headers = _pure.Headers

cdef tuple VERSIONS = _pure.VERSIONS


cdef inline _frozen(name):
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


cdef inline _undeletable(name):
    raise FrozenInstanceError(f"cannot delete field {name!r}")


cdef tuple _decode_field_lines(bytes lines, Py_ssize_t start, Py_ssize_t end):
    """The (name, value) pairs of the field lines ``lines[start:end]`` (whole lines that a
    scan checked), decoded as latin-1, the value without its leading and trailing
    whitespace."""
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(lines)
    cdef FieldLine line
    out = []
    while start < end:
        read_field_line(p, start, end, &line)
        out.append((
            PyUnicode_DecodeLatin1(<const char *>p + start, line.colon - start, NULL),
            PyUnicode_DecodeLatin1(<const char *>p + line.value_start, line.value_end - line.value_start, NULL),
        ))
        start = line.next
    return tuple(out)


@cython.freelist(16)
cdef class Request:
    """A request head (see ``_events_py.Request``)."""

    __dataclass_fields__ = _pure.Request.__dataclass_fields__
    __dataclass_params__ = _pure.Request.__dataclass_params__
    __match_args__ = _pure.Request.__match_args__

    def __init__(self, str method, str target, tuple headers, str http_version, keep_alive, chunked,
                 content_length, expect_continue, upgrade):
        if http_version not in VERSIONS:
            raise ValueError(f"http_version must be 1.0 or 1.1, not {http_version!r}")
        self.method = method
        self.target = target
        self.headers = headers
        self.http_version = http_version
        self.keep_alive = keep_alive
        self.chunked = chunked
        self.content_length = content_length
        self.expect_continue = expect_continue
        self.upgrade = upgrade

    cdef tuple _fields(self):
        return (self.method, self.target, self.headers, self.http_version, self.keep_alive, self.chunked,
                self.content_length, self.expect_continue, self.upgrade)

    def __eq__(self, other):
        if type(other) is not Request:
            return NotImplemented
        return self._fields() == (<Request>other)._fields()

    def __hash__(self):
        return hash(self._fields())

    def __repr__(self):
        return (f"Request(method={self.method!r}, target={self.target!r}, headers={self.headers!r}, "
                f"http_version={self.http_version!r}, keep_alive={self.keep_alive!r}, chunked={self.chunked!r}, "
                f"content_length={self.content_length!r}, expect_continue={self.expect_continue!r}, "
                f"upgrade={self.upgrade!r})")

    def __setattr__(self, name, value):
        _frozen(name)

    def __delattr__(self, name):
        _undeletable(name)


@cython.freelist(16)
cdef class Response:
    """A final response head, 101 included (see ``_events_py.Response``)."""

    __dataclass_fields__ = _pure.Response.__dataclass_fields__
    __dataclass_params__ = _pure.Response.__dataclass_params__
    __match_args__ = _pure.Response.__match_args__

    def __init__(self, int status, str reason, tuple headers, str http_version, keep_alive, chunked,
                 content_length):
        if http_version not in VERSIONS:
            raise ValueError(f"http_version must be 1.0 or 1.1, not {http_version!r}")
        if not (200 <= status <= 999 or status == 101):
            raise ValueError(f"a final response has status 101 or 200-999, not {status}")
        self.status = status
        self.reason = reason
        self._headers = headers
        self.http_version = http_version
        self.keep_alive = keep_alive
        self.chunked = chunked
        self.content_length = content_length

    @property
    def headers(self):
        return self.header_tuple()

    cdef tuple header_tuple(self):
        """The headers, decoded from the field lines the first time when the event holds
        them as received (a head the fast lane read; see ``_events.pxd``)."""
        if self._headers is None:
            self._headers = _decode_field_lines(self._lines, self._lines_start, self._lines_end)
        return self._headers

    cdef tuple _fields(self):
        return (self.status, self.reason, self.header_tuple(), self.http_version, self.keep_alive, self.chunked,
                self.content_length)

    def __eq__(self, other):
        if type(other) is not Response:
            return NotImplemented
        return self._fields() == (<Response>other)._fields()

    def __hash__(self):
        return hash(self._fields())

    def __repr__(self):
        return (f"Response(status={self.status!r}, reason={self.reason!r}, headers={self.header_tuple()!r}, "
                f"http_version={self.http_version!r}, keep_alive={self.keep_alive!r}, chunked={self.chunked!r}, "
                f"content_length={self.content_length!r})")

    def __setattr__(self, name, value):
        _frozen(name)

    def __delattr__(self, name):
        _undeletable(name)


cdef class InformationalResponse:
    """A 1xx response other than 101 (see ``_events_py.InformationalResponse``)."""

    __dataclass_fields__ = _pure.InformationalResponse.__dataclass_fields__
    __dataclass_params__ = _pure.InformationalResponse.__dataclass_params__
    __match_args__ = _pure.InformationalResponse.__match_args__

    def __init__(self, int status, str reason, tuple headers):
        if not 100 <= status <= 199 or status == 101:
            raise ValueError(f"an informational response has status 1xx but not 101, not {status}")
        self.status = status
        self.reason = reason
        self.headers = headers

    def __eq__(self, other):
        if type(other) is not InformationalResponse:
            return NotImplemented
        cdef InformationalResponse o = other
        return (self.status, self.reason, self.headers) == (o.status, o.reason, o.headers)

    def __hash__(self):
        return hash((self.status, self.reason, self.headers))

    def __repr__(self):
        return f"InformationalResponse(status={self.status!r}, reason={self.reason!r}, headers={self.headers!r})"

    def __setattr__(self, name, value):
        _frozen(name)

    def __delattr__(self, name):
        _undeletable(name)


@cython.freelist(16)
cdef class Data:
    """Body bytes, de-chunked (see ``_events_py.Data``)."""

    __dataclass_fields__ = _pure.Data.__dataclass_fields__
    __dataclass_params__ = _pure.Data.__dataclass_params__
    __match_args__ = _pure.Data.__match_args__

    def __init__(self, data):
        self.data = data

    def __eq__(self, other):
        if type(other) is not Data:
            return NotImplemented
        return (self.data,) == ((<Data>other).data,)

    def __hash__(self):
        return hash((self.data,))

    def __repr__(self):
        return f"Data(data={self.data!r})"

    def __setattr__(self, name, value):
        _frozen(name)

    def __delattr__(self, name):
        _undeletable(name)


@cython.freelist(16)
cdef class EndOfMessage:
    """The end of a message body, with a chunked body's trailers (see ``_events_py.EndOfMessage``)."""

    __dataclass_fields__ = _pure.EndOfMessage.__dataclass_fields__
    __dataclass_params__ = _pure.EndOfMessage.__dataclass_params__
    __match_args__ = _pure.EndOfMessage.__match_args__

    def __init__(self, tuple trailers=()):
        self.trailers = trailers

    def __eq__(self, other):
        if type(other) is not EndOfMessage:
            return NotImplemented
        return (self.trailers,) == ((<EndOfMessage>other).trailers,)

    def __hash__(self):
        return hash((self.trailers,))

    def __repr__(self):
        return f"EndOfMessage(trailers={self.trailers!r})"

    def __setattr__(self, name, value):
        _frozen(name)

    def __delattr__(self, name):
        _undeletable(name)
