"""Field validators and the machinery that runs them over a Spec dataclass.

Theory of operation: every Spec dataclass declares ``_FIELDS``, a table of field name
-> validator, and optionally ``_finish(values)``, the checks that span several fields
(and the few resolutions that follow from them, like a single certificate being the
default). ``check_object`` runs both and returns every problem, each with a path
relative to the object. Two callers use it:

- a dataclass's ``__post_init__``, so a Spec built by a program is checked, and made
  canonical (``"5s"`` -> 5.0, ``"127.0.0.1:80"`` -> Address), exactly as one from a file;
- the file reader (``_parse``), which adds the file's own concerns (unknown keys,
  cascading) and builds an object only when it and everything under it was clean.

When part of an object is wrong, the reader still checks the rest: a field that failed
holds ``FAILED``, a nested object that failed is a ``Partial`` (its good fields still
readable), and every cross-field check skips what it cannot judge. So one bad file
gets every problem reported, and no problem twice.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable, Mapping

from lbcore.spec._errors import SpecError, SpecIssue, join_path
from lbcore.spec._values import (
    Address,
    Invalid,
    Validator,
    describe,
    did_you_mean,
    freeze,
    is_number,
    parse_duration,
    parse_size,
    parse_status_ranges,
    status_ranges_text,
)

# -- failure markers -----------------------------------------------------------------------


class _Failed:
    __slots__ = ()

    def __repr__(self) -> str:
        return "FAILED"


FAILED: Any = _Failed()


class Partial:
    """An object that could not be built; its fields that were good stay readable."""

    __slots__ = ("cls", "values")

    def __init__(self, cls: type, values: Mapping[str, Any]) -> None:
        self.cls = cls
        self.values = dict(values)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            return FAILED

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"Partial({self.cls.__name__}, {self.values!r})"


def ok(*values: Any) -> bool:
    """Whether every value is usable for a check (not FAILED, not a Partial)."""
    return not any(value is FAILED or isinstance(value, Partial) for value in values)


def known(value: Any) -> bool:
    """Whether a value can be read at all (a Partial can: its good fields)."""
    return value is not FAILED


# -- running the table ------------------------------------------------------------------------
Issues = list[tuple[str, str]]


def check_object(cls: type, values: dict[str, Any]) -> Issues:
    """Validate ``values`` in place (canonical values replace raw ones, FAILED marks
    a bad field) and return every problem as (relative path, message)."""
    issues: Issues = []
    for name, validator in cls._FIELDS.items():  # type: ignore[attr-defined]
        value = values[name]
        if value is FAILED or isinstance(value, Partial):
            continue
        try:
            values[name] = validator(value)
        except Invalid as exc:
            issues.append((name + exc.sub, exc.message))
            values[name] = FAILED
    finish = getattr(cls, "_finish", None)
    if finish is not None:
        issues.extend(finish(values))
    return issues


def settle(obj: Any) -> None:
    """``__post_init__`` of every Spec dataclass: validate, canonicalise, or raise."""
    cls = type(obj)
    values = {name: getattr(obj, name) for name in cls._FIELDS}
    issues = check_object(cls, values)
    if issues:
        raise SpecError([SpecIssue(path, message) for path, message in issues])
    for name, value in values.items():
        object.__setattr__(obj, name, value)


# -- validators ---------------------------------------------------------------------------------
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
# RFC 9110 5.6.2 token; RFC 6265 cookie-name is the same alphabet.
TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?\Z|\[[0-9A-Fa-f:.]+\]\Z")
_FIELD_VALUE_BAD = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Headers a listener may not set: hop-by-hop ones (RFC 9110 7.6.1) and message framing,
# which the engine owns (RFC 9112 6).
FORBIDDEN_SET_HEADERS = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "content-length"}
)
FORWARDED_HEADERS = ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-port", "forwarded")


def name(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(f"expected a name, got {describe(value)}")
    if not NAME_RE.match(value):
        raise Invalid(
            f"invalid name {value!r} (letters, digits, '_', '.', '-'; "
            "starts with a letter or digit; at most 63)"
        )
    return value


def optional(validator: Validator) -> Validator:
    def check(value: Any) -> Any:
        return None if value is None else validator(value)

    return check


def integer(low: int, high: int | None = None) -> Validator:
    def check(value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise Invalid(f"expected an integer, got {describe(value)}")
        if value < low or (high is not None and value > high):
            bound = f"{low}..{high}" if high is not None else f"at least {low}"
            raise Invalid(f"{value} is out of range ({bound})")
        return value

    return check


def fraction(low: float, high: float) -> Validator:
    """A number with low <= value < high."""

    def check(value: Any) -> float:
        if not is_number(value):
            raise Invalid(f"expected a number, got {describe(value)}")
        if not low <= value < high:
            raise Invalid(f"{value} is out of range ({low} <= value < {high})")
        return float(value)

    return check


def duration(*, positive: bool = True) -> Validator:
    def check(value: Any) -> float:
        seconds = parse_duration(value)
        if positive and seconds == 0:
            raise Invalid("must be more than 0")
        return seconds

    return check


def size(*, low: int = 1) -> Validator:
    def check(value: Any) -> int:
        size = parse_size(value)
        if size < low:
            raise Invalid(f"must be at least {low} bytes")
        return size

    return check


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"expected true or false, got {describe(value)}")
    return value


def choice(options: Iterable[Any]) -> Validator:
    options = tuple(options)

    def check(value: Any) -> Any:
        if isinstance(value, bool) or value not in options:
            hint = did_you_mean(value, map(str, options)) if isinstance(value, str) else ""
            listed = ", ".join(map(str, options))
            raise Invalid(f"{value!r} is not one of {listed}{hint}")
        return value

    return check


def text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise Invalid(f"expected a non-empty string, got {describe(value)}")
    return value


def address(value: Any) -> Address:
    return Address.parse(value)


def hostname(value: Any) -> str:
    """A DNS name or a bracketed IPv6 literal (as in a URL or Host header)."""
    if not isinstance(value, str) or not _HOST_RE.match(value) or len(value) > 253:
        raise Invalid(f"invalid host name {value!r}" if isinstance(value, str) else f"expected a host name, got {describe(value)}")
    return value.lower()


def host_header(value: Any) -> str:
    """A Host header value: a host name, optionally with :port."""
    if not isinstance(value, str):
        raise Invalid(f"expected a host name, got {describe(value)}")
    match = re.fullmatch(r"(.+?)(?::(\d{1,5}))?", value)
    if match is None:
        raise Invalid(f"invalid host name {value!r}")
    hostname(match.group(1))
    return value.lower()


def cookie_name(value: Any) -> str:
    if not isinstance(value, str) or not TOKEN_RE.match(value):
        shown = repr(value) if isinstance(value, str) else describe(value)
        raise Invalid(f"invalid cookie name {shown} (RFC 6265 token characters)")
    return value


def header_name(value: Any) -> str:
    if not isinstance(value, str) or not TOKEN_RE.match(value):
        shown = repr(value) if isinstance(value, str) else describe(value)
        raise Invalid(f"invalid header name {shown}")
    return value


def http_method(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Z]{1,20}", value):
        raise Invalid(f"invalid method {value!r} (upper-case letters, like GET or HEAD)")
    return value


def url_path(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/") or re.search(r"[\x00-\x20\x7f]", value):
        raise Invalid(f"invalid path {value!r} (starts with '/', no spaces)")
    return value


def status_ranges(value: Any) -> str:
    """The canonical text of an expected-status list: ``"200-299, 302"`` -> ``"200-299,302"``."""
    return status_ranges_text(parse_status_ranges(value))


def header_pairs(value: Any) -> tuple[tuple[str, str], ...]:
    """Headers to set, from a mapping (file) or pairs (program); sorted by lower-case
    name so that how they were written does not change the Spec."""
    items = value.items() if isinstance(value, Mapping) else value
    if not isinstance(items, Iterable) or isinstance(items, (str, bytes)):
        raise Invalid(f"expected a mapping of header name to value, got {describe(value)}")
    seen: dict[str, str] = {}
    pairs = []
    for item in items:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise Invalid(f"expected (name, value) pairs, got {describe(item)}")
        key, val = item
        sub = f".{key}" if isinstance(key, str) else ""
        header_name(key)
        lower = key.lower()
        if lower in FORBIDDEN_SET_HEADERS:
            raise Invalid(f"{key} is a hop-by-hop or framing header: the engine sets it", sub)
        if lower in seen:
            raise Invalid(f"{key} is set twice (also as {seen[lower]})", sub)
        if not isinstance(val, str):
            raise Invalid(f"expected a string value, got {describe(val)}", sub)
        if _FIELD_VALUE_BAD.search(val):
            raise Invalid("a header value may not contain control characters", sub)
        seen[lower] = key
        pairs.append((key, val))
    return tuple(sorted(pairs, key=lambda pair: (pair[0].lower(), pair[0])))


def forwarded_headers(value: Any) -> tuple[str, ...]:
    """A set of forwarding headers, in the canonical order of FORWARDED_HEADERS."""
    if not isinstance(value, (list, tuple)):
        raise Invalid(f"expected a list of header names, got {describe(value)}")
    chosen = set()
    for index, item in enumerate(value):
        lower = item.lower() if isinstance(item, str) else item
        if lower not in FORWARDED_HEADERS:
            hint = did_you_mean(lower, FORWARDED_HEADERS) if isinstance(lower, str) else ""
            raise Invalid(f"{item!r} is not one of {', '.join(FORWARDED_HEADERS)}{hint}", f"[{index}]")
        chosen.add(lower)
    return tuple(header for header in FORWARDED_HEADERS if header in chosen)


def strings(item: Validator) -> Validator:
    def check(value: Any) -> tuple[str, ...]:
        if not isinstance(value, (list, tuple)):
            raise Invalid(f"expected a list, got {describe(value)}")
        out = []
        for index, element in enumerate(value):
            try:
                out.append(item(element))
            except Invalid as exc:
                raise Invalid(exc.message, f"[{index}]{exc.sub}") from None
        return tuple(out)

    return check


def instance(cls: type) -> Validator:
    def check(value: Any) -> Any:
        if not isinstance(value, cls):
            raise Invalid(f"expected {cls.__name__}, got {describe(value)}")
        return value

    return check


def tuple_of(cls: type) -> Validator:
    """A tuple of ``cls`` objects; a Partial item (reported already) passes."""

    def check(value: Any) -> tuple[Any, ...]:
        if not isinstance(value, (list, tuple)):
            raise Invalid(f"expected a list of {cls.__name__}, got {describe(value)}")
        for index, item in enumerate(value):
            if not isinstance(item, cls) and not (isinstance(item, Partial) and item.cls is cls):
                raise Invalid(f"expected {cls.__name__}, got {describe(item)}", f"[{index}]")
        return tuple(value)

    return check


def frozen_source(value: Any) -> Any:
    """An ACL condition as written: a string, or a mapping/list kept hashable."""
    if isinstance(value, str):
        return value
    if isinstance(value, (Mapping, list, tuple)):
        return freeze(value)
    raise Invalid(f"expected a condition (string or mapping), got {describe(value)}")


def callable_check(predicate: Callable[[Any], bool], message: str) -> Validator:
    def check(value: Any) -> Any:
        if not predicate(value):
            raise Invalid(f"{message}, got {describe(value)}")
        return value

    return check


def duplicates(items: Iterable[tuple[int, Any]], what: str, where: str) -> Issues:
    """(index, name) pairs -> an issue at ``[i].name`` for each repeated name."""
    first: dict[Any, int] = {}
    issues: Issues = []
    for index, key in items:
        if key is FAILED or key is None:
            continue
        if key in first:
            issues.append(
                (join_path(f"[{index}]", "name"), f"duplicate {what} name {key!r} (first at {where}[{first[key]}])")
            )
        else:
            first[key] = index
    return issues
