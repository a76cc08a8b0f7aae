"""Scalar value types and validators of the Spec: durations, sizes, addresses, names.

A validator is a function ``value -> canonical value`` that raises ``Invalid`` (a
ValueError) with a short message naming what is wrong. The same validator converts
what a file says (``"5s"``, ``"10m"``, ``"127.0.0.1:8080"``) and re-checks what a
program passes to a Spec dataclass, so a rule is written once.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
import socket
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable, Iterable, Mapping

__all__ = [
    "Address",
    "FrozenDict",
    "Invalid",
    "format_duration",
    "format_size",
    "freeze",
    "parse_duration",
    "parse_size",
    "parse_status_ranges",
    "thaw",
]

Validator = Callable[[Any], Any]


class Invalid(ValueError):
    """A value is wrong. ``sub`` is a path below the field (".X-Env", "[2]"), if any."""

    def __init__(self, message: str, sub: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.sub = sub


def describe(value: Any) -> str:
    """A short description of a wrong value for an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"number {value!r}"
    if isinstance(value, str):
        return f"string {value[:60]!r}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# -- durations -------------------------------------------------------------------------
# Units as haproxy writes them (ms, s, m, h, d); a bare number is seconds.
_DURATION_UNITS = {"ms": Fraction(1, 1000), "s": Fraction(1), "m": Fraction(60), "h": Fraction(3600), "d": Fraction(86400)}
_DURATION_RE = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d)?\s*\Z")


def parse_duration(value: Any) -> float:
    """Seconds as a float from ``5s``, ``500ms``, ``2m``, ``1h``, ``1d``, ``1.5s`` or a number."""
    if is_number(value):
        if not math.isfinite(value):
            raise Invalid(f"invalid duration {value!r}")
        if value < 0:
            raise Invalid(f"duration must not be negative, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise Invalid(f"expected a duration like 5s or 500ms, got {describe(value)}")
    match = _DURATION_RE.match(value)
    if match is None:
        raise Invalid(f"invalid duration {value!r} (use 5s, 500ms, 2m, 1h, 1d or a number of seconds)")
    number, unit = match.groups()
    return float(Fraction(number) * _DURATION_UNITS[unit or "s"])


def format_duration(seconds: float) -> str:
    """The shortest exact unit form: 30.0 -> "30s", 0.5 -> "500ms", 120.0 -> "2m"."""
    exact = Fraction(seconds).limit_denominator(1_000_000)
    if exact == 0:
        return "0s"
    for unit in ("d", "h", "m", "s", "ms"):
        count = exact / _DURATION_UNITS[unit]
        if count.denominator == 1:
            return f"{count.numerator}{unit}"
    return f"{seconds!r}s"


# -- sizes -------------------------------------------------------------------------------
# k, m, g are binary (KiB, MiB, GiB), as in haproxy and nginx size suffixes.
_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(?:([kmg])(?:i?b)?|(b))?\s*\Z", re.IGNORECASE)


def parse_size(value: Any) -> int:
    """Bytes as an int from ``8192``, ``512k``, ``10m``, ``1g`` (also ``10MiB``, ``10mb``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise Invalid(f"size must not be negative, got {value}")
        return value
    if not isinstance(value, str):
        raise Invalid(f"expected a size like 8192, 64k or 10m, got {describe(value)}")
    match = _SIZE_RE.match(value)
    if match is None:
        raise Invalid(f"invalid size {value!r} (use bytes or k, m, g: 64k, 10m, 1g)")
    number, unit, _ = match.groups()
    total = Fraction(number) * _SIZE_UNITS[(unit or "").lower()]
    if total.denominator != 1:
        raise Invalid(f"size {value!r} is not a whole number of bytes")
    return int(total)


def format_size(size: int) -> str:
    for unit in ("g", "m", "k"):
        if size and size % _SIZE_UNITS[unit] == 0:
            return f"{size // _SIZE_UNITS[unit]}{unit}"
    return str(size)


# -- HTTP status ranges ------------------------------------------------------------------
_STATUS_ITEM_RE = re.compile(r"(\d{3})(?:-(\d{3}))?\Z")


def parse_status_ranges(value: Any) -> tuple[tuple[int, int], ...]:
    """``"200-299,302"`` -> ((200, 299), (302, 302)); codes 100..599, ranges low-high."""
    if is_number(value) and isinstance(value, int):
        value = str(value)
    if not isinstance(value, str):
        raise Invalid(f"expected status codes like \"200-399\", got {describe(value)}")
    ranges = []
    for item in value.split(","):
        match = _STATUS_ITEM_RE.match(item.strip())
        if match is None:
            raise Invalid(f"invalid expect {value!r} (use codes and ranges like 200-299,302)")
        low = int(match.group(1))
        high = int(match.group(2) or low)
        if not (100 <= low <= high <= 599):
            raise Invalid(f"invalid status range {item.strip()!r} in expect (codes 100..599, low-high)")
        ranges.append((low, high))
    return tuple(ranges)


def status_ranges_text(ranges: tuple[tuple[int, int], ...]) -> str:
    return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges)


# -- addresses ---------------------------------------------------------------------------
_PORT_RE = re.compile(r"\d{1,5}\Z")


def check_port(port: Any) -> int:
    if not isinstance(port, int) or isinstance(port, bool):
        raise Invalid(f"expected a port number, got {describe(port)}")
    if not 1 <= port <= 65535:
        raise Invalid(f"invalid port {port} (1..65535)")
    return port


def _canonical_host(host: str) -> str:
    if host in ("", "*"):
        return "0.0.0.0"
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        raise Invalid(f"{host!r} is not an IP address (names are not resolved)") from None


@dataclass(frozen=True, slots=True, order=True)
class Address:
    """An IP address and port. ``*`` or an empty host is 0.0.0.0 (every v4 address)."""

    host: str
    port: int

    def __post_init__(self) -> None:
        if not isinstance(self.host, str):
            raise Invalid(f"expected an IP address, got {describe(self.host)}")
        object.__setattr__(self, "host", _canonical_host(self.host.strip("[]")))
        check_port(self.port)

    @classmethod
    def parse(cls, text: Any) -> "Address":
        """``127.0.0.1:8080``, ``[::1]:8080``, ``*:80`` or ``:80`` (0.0.0.0)."""
        if isinstance(text, Address):
            return text
        if not isinstance(text, str):
            raise Invalid(f"expected an address like 127.0.0.1:8080, got {describe(text)}")
        text = text.strip()
        if text.startswith("["):
            host, sep, port = text[1:].partition("]:")
            if not sep or "]" in host:
                raise Invalid(f"invalid address {text!r} (expected [V6ADDR]:PORT, e.g. [::1]:8080)")
            if not host:
                raise Invalid(f"invalid address {text!r} (empty IPv6 address)")
        else:
            host, sep, port = text.rpartition(":")
            if not sep:
                raise Invalid(f"invalid address {text!r} (expected HOST:PORT, e.g. 127.0.0.1:8080)")
            if ":" in host:
                raise Invalid(f"invalid address {text!r} (an IPv6 address needs brackets: [::1]:8080)")
        if not _PORT_RE.match(port):
            raise Invalid(f"invalid port {port!r} in address {text!r}")
        return cls(host, int(port))

    @property
    def family(self) -> int:
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET

    @property
    def is_wildcard(self) -> bool:
        return self.host in ("0.0.0.0", "::")

    def overlaps(self, other: "Address") -> bool:
        """Whether binding both would conflict: same port and the same or a wildcard host
        of the same family. ``::`` is taken as v6-only (the engine sets IPV6_V6ONLY)."""
        if self.port != other.port or self.family != other.family:
            return False
        return self.host == other.host or self.is_wildcard or other.is_wildcard

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if self.family == socket.AF_INET6 else f"{self.host}:{self.port}"


# -- hashable plain data (ACL sources written as mappings) --------------------------------
class FrozenDict(dict):  # type: ignore[type-arg]
    """A dict that cannot change and so can be hashed; pickles and JSON-encodes as a dict."""

    __slots__ = ()

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def _immutable(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("FrozenDict cannot be changed")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _immutable  # type: ignore[assignment]

    def __reduce__(self) -> Any:
        return (FrozenDict, (dict(self),))

    def __repr__(self) -> str:
        return f"FrozenDict({dict.__repr__(self)})"


def freeze(value: Any) -> Any:
    """Mappings -> FrozenDict, lists -> tuples, recursively."""
    if isinstance(value, Mapping):
        return FrozenDict((key, freeze(item)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return tuple(freeze(item) for item in value)
    return value


def thaw(value: Any) -> Any:
    """The inverse of freeze: plain dicts and lists for JSON and YAML."""
    if isinstance(value, Mapping):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(item) for item in value]
    return value
