"""The wire schema of the entity model: one ``Field`` per writable field, small validators.

Each model class (``lbcore.control.model``) carries ``FIELDS``: field name -> ``Field``.
That table is the one description of what a client may send: ``check_input`` validates
a create or update dict against it (every problem collected, each with its field path),
and ``describe`` turns it into a JSON-schema-like dict for the REST layer's OpenAPI
document. Validators are plain functions ``value -> canonical value`` raising
``ValueError`` with a short message; where the Spec already has the rule (durations,
redirects, persistence, outlier detection, ACL conditions, health checks) the Spec's
own code checks it, so a rule is written once.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from lbcore.l7.acl import parse_condition
from lbcore.spec import HealthCheck, Outlier, Persistence, Redirect, SpecError, parse_duration, parse_size

__all__ = [
    "Field",
    "check_input",
    "describe",
    "NAME_MAX",
    "did_you_mean",
]

Check = Callable[[Any], Any]
NAME_MAX = 255
_HEADER_NAME_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_ALGORITHM_RE = re.compile(r"(roundrobin|leastconn|source|uri|random)\Z|hdr\(\s*([!#$%&'*+\-.^_`|~0-9A-Za-z]+)\s*\)\Z")


@dataclass(frozen=True)
class Field:
    """One writable field. ``type`` is a JSON-schema type name (or ``a|b``); ``check``
    canonicalises a value or raises ValueError. ``mutable`` False: set at create only.
    ``write_only``: accepted, never returned (secrets). ``admin_only``: only an admin
    may set it (to a value other than the default). ``ref``: the kind this id names."""

    type: str
    check: Check
    required: bool = False
    default: Any = None
    mutable: bool = True
    nullable: bool = False
    write_only: bool = False
    admin_only: bool = False
    choices: tuple[Any, ...] | None = None
    ref: str | None = None
    description: str = ""


# -- validators -----------------------------------------------------------------------------------


def text(max_length: int = NAME_MAX) -> Check:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {_describe(value)}")
        if len(value) > max_length:
            raise ValueError(f"at most {max_length} characters")
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise ValueError("control characters are not allowed")
        return value

    return check


def identifier(value: Any) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 64:
        raise ValueError(f"expected an id, got {_describe(value)}")
    return value


def choice(*values: Any, upper: bool = False) -> Check:
    def check(value: Any) -> Any:
        probe = value.upper() if upper and isinstance(value, str) else value
        if probe not in values:
            raise ValueError(f"must be one of {', '.join(map(str, values))}")
        return probe

    return check


def integer(low: int, high: int) -> Check:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {_describe(value)}")
        if not low <= value <= high:
            raise ValueError(f"must be {low}..{high}")
        return value

    return check


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {_describe(value)}")
    return value


def duration(value: Any) -> float:
    """Seconds: a number or ``5s``, ``500ms``, ``2m`` (the Spec's syntax)."""
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    if seconds <= 0:
        raise ValueError("must be more than 0")
    return seconds


def duration_or_zero(value: Any) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ValueError(str(exc)) from None


def ip_address(value: Any) -> str:
    """An IPv4 or IPv6 address, canonical (``2001:DB8::1`` -> ``2001:db8::1``); no names."""
    if not isinstance(value, str):
        raise ValueError(f"expected an IP address, got {_describe(value)}")
    try:
        return str(ipaddress.ip_address(value.strip("[]")))
    except ValueError:
        raise ValueError(f"{value[:60]!r} is not an IP address") from None


def ip_list(value: Any) -> list[str]:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"expected a list of IP addresses, got {_describe(value)}")
    out: list[str] = []
    for index, item in enumerate(value):
        try:
            address = ip_address(item)
        except ValueError as exc:
            raise ValueError(f"[{index}]: {exc}") from None
        if address not in out:
            out.append(address)
    return out


def host_port(value: Any) -> str:
    """``host:port`` or ``[v6]:port`` (a node agent's management address; names allowed)."""
    if not isinstance(value, str):
        raise ValueError(f"expected HOST:PORT, got {_describe(value)}")
    if value.startswith("["):
        host, sep, port = value[1:].partition("]:")
        if sep:
            ip_address(host)
    else:
        host, sep, port = value.rpartition(":")
        if ":" in host:
            raise ValueError("an IPv6 address needs brackets: [::1]:9443")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT with a port 1..65535, got {value[:80]!r}")
    if not value.startswith("[") and not re.fullmatch(r"[A-Za-z0-9.-]{1,253}", host):
        raise ValueError(f"invalid host {host[:60]!r}")
    return value


def algorithm(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected an algorithm, got {_describe(value)}")
    match = _ALGORITHM_RE.match(value.strip())
    if match is None:
        raise ValueError(f"invalid algorithm {value[:60]!r} (roundrobin, leastconn, source, uri, hdr(NAME) or random)")
    return match.group(1) or f"hdr({match.group(2).lower()})"


def forwarded_headers(value: Any) -> list[str]:
    allowed = ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-port", "forwarded")
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"expected a list of header names, got {_describe(value)}")
    chosen = []
    for item in value:
        lower = item.lower() if isinstance(item, str) else item
        if lower not in allowed:
            raise ValueError(f"{item!r} is not a forwarding header ({', '.join(allowed)})")
        if lower not in chosen:
            chosen.append(lower)
    return [name for name in allowed if name in chosen]


def size(value: Any) -> int:
    """Bytes: a number or ``64k``, ``10m`` (the Spec's syntax)."""
    try:
        return parse_size(value)
    except ValueError as exc:
        raise ValueError(str(exc)) from None


def headers(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a mapping of header name to value, got {_describe(value)}")
    out = {}
    for key, item in value.items():
        if not isinstance(key, str) or not _HEADER_NAME_RE.match(key):
            raise ValueError(f"invalid header name {key!r}")
        if not isinstance(item, str):
            raise ValueError(f"{key}: expected a string value")
        out[key] = item
    return out


def condition(value: Any) -> Any:
    """An ACL condition, compact string or structured mapping (``lbcore.l7.acl``)."""
    if not isinstance(value, (str, Mapping, list)):
        raise ValueError(f"expected a condition (a string or a mapping), got {_describe(value)}")
    try:
        parse_condition(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(str(exc)) from None
    return value


def pem(label: str) -> Check:
    def check(value: Any) -> str:
        if isinstance(value, bytes):
            try:
                value = value.decode("ascii")
            except UnicodeDecodeError:
                raise ValueError(f"expected PEM text ({label})") from None
        if not isinstance(value, str) or "-----BEGIN " not in value:
            raise ValueError(f"expected PEM text ({label})")
        if len(value) > 1 << 20:
            raise ValueError("PEM text over 1 MiB")
        return value

    return check


def secret_text(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > 1024:
        raise ValueError("expected a non-empty string of at most 1024 characters")
    return value


def spec_object(cls: type, *, fixed: Mapping[str, Any] | None = None, drop: Iterable[str] = ()) -> Check:
    """A mapping checked by the Spec dataclass ``cls`` (its own validators and rules);
    the canonical ``to_dict()`` is stored. ``fixed``: values forced for the check only."""

    def check(value: Any) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise ValueError(f"expected a mapping, got {_describe(value)}")
        unknown = [key for key in value if key not in cls._FIELDS]  # type: ignore[attr-defined]
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r} (known: {', '.join(cls._FIELDS)})")  # type: ignore[attr-defined]
        try:
            obj = cls(**{**value, **(fixed or {})})
        except SpecError as exc:
            raise ValueError("; ".join(str(issue) for issue in exc.errors)) from None
        except TypeError as exc:  # a required key is missing
            raise ValueError(str(exc).split(".__init__() ", 1)[-1]) from None
        out = obj.to_dict()
        for key in drop:
            out.pop(key, None)
        return out

    return check


redirect = spec_object(Redirect)
persistence = spec_object(Persistence)
outlier = spec_object(Outlier)


def health_field(key: str) -> Check:
    """One field of a health check, checked as the Spec's HealthCheck checks it."""

    def check(value: Any) -> Any:
        try:
            obj = HealthCheck(type="http", **{key: value})
        except SpecError as exc:
            raise ValueError("; ".join(issue.message for issue in exc.errors)) from None
        return getattr(obj, key)

    return check


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


# -- whole inputs ---------------------------------------------------------------------------------


def check_input(
    fields: Mapping[str, Field],
    data: Any,
    *,
    creating: bool,
    is_admin: bool,
    current: Mapping[str, Any] | None = None,
    read_only: Iterable[str] = (),
) -> tuple[dict[str, Any], list[tuple[str, str]], list[str]]:
    """Validate a create (``creating``) or update dict. Returns (canonical values,
    errors as (field, message), fields an admin-only rule refused). On update,
    ``current`` holds the object's present values: an immutable or read-only field
    may be sent unchanged (a GET result sent back), not changed."""
    errors: list[tuple[str, str]] = []
    forbidden: list[str] = []
    if not isinstance(data, Mapping):
        return {}, [("", f"expected an object, got {_describe(data)}")], []
    out: dict[str, Any] = {}
    read_only = set(read_only)
    for key, value in data.items():
        if not isinstance(key, str):
            errors.append(("", f"field names are strings, got {_describe(key)}"))
            continue
        field = fields.get(key)
        if field is None:
            if key in read_only:
                if creating or current is None or current.get(key) != value:
                    errors.append((key, "is read-only"))
                continue
            errors.append((key, f"unknown field{did_you_mean(key, fields)}"))
            continue
        if value is None and field.nullable:
            canonical = None
        elif value is None:
            errors.append((key, "must not be null"))
            continue
        else:
            try:
                canonical = field.check(value)
            except ValueError as exc:
                errors.append((key, str(exc)))
                continue
        if not creating and not field.mutable:
            if current is not None and current.get(key) == canonical:
                continue
            errors.append((key, "cannot be changed after create"))
            continue
        if field.admin_only and not is_admin and canonical != field.default:
            forbidden.append(key)
            continue
        out[key] = canonical
    if creating:
        for key, field in fields.items():
            if key in out or any(path == key for path, _ in errors) or key in forbidden:
                continue
            if field.required:
                errors.append((key, "required"))
            else:
                out[key] = field.default() if callable(field.default) else field.default
    return out, errors, forbidden


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def describe(fields: Mapping[str, Field], read_only: Mapping[str, str]) -> dict[str, Any]:
    """A JSON-schema-like description: ``{"fields": {name: {...}}, "read_only": {...}}``."""
    out: dict[str, Any] = {}
    for name, field in fields.items():
        entry: dict[str, Any] = {"type": field.type, "required": field.required, "mutable": field.mutable,
                                 "nullable": field.nullable}
        if not field.required:
            entry["default"] = field.default() if callable(field.default) else field.default
        for attr in ("choices", "ref", "description"):
            if getattr(field, attr):
                entry[attr] = list(field.choices) if attr == "choices" else getattr(field, attr)
        if field.write_only:
            entry["write_only"] = True
        if field.admin_only:
            entry["admin_only"] = True
        out[name] = entry
    return {"fields": out, "read_only": dict(read_only)}
