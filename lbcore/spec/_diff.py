"""What changed between two Specs, as a list of path-addressed changes.

Named lists are matched by name, not position, so paths read like
``pools[www].members[w1].weight``; ACLs and members are ordered, and a change of their
order is one more change (``listeners[web].acls``, old and new name orders). The
output order is stable: fields in declaration order; within a named list, removals in
the old order, then additions and changes in the new order, then the reordering.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Iterable, Sequence

from lbcore.spec._model import Acl, Listener, Pool, Spec, Timeouts
from lbcore.spec._values import Address, format_duration, thaw

__all__ = ["Change", "diff", "format_diff"]

KINDS = ("added", "removed", "changed")
# List fields matched by a key, and whether their order means something.
_KEYED = {"acls": ("name", True), "members": ("name", True), "listeners": ("name", False),
          "pools": ("name", False), "certificates": ("cert", True)}
_TIMEOUT_KEYS = {Listener: Timeouts.LISTENER_KEYS, Pool: Timeouts.POOL_KEYS}
_HEADER_MAPS = ("add_headers", "response_headers")
_ORDERED_SUFFIXES = tuple(f".{name}" for name, (_, ordered) in _KEYED.items() if ordered)
_DURATIONS = frozenset({"connect", "client", "server", "http_request", "keepalive", "tunnel", "drain", "interval", "timeout",
                        "ejection_time", "slow_start"})


@dataclass(frozen=True, slots=True)
class Change:
    """One difference. ``old``/``new`` are Spec values (None for added/removed), for
    an order change the tuples of names."""

    path: str
    kind: str
    old: Any = None
    new: Any = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"change kind must be one of {KINDS}, not {self.kind!r}")

    def to_dict(self) -> dict[str, Any]:
        if self.path.rsplit(".", 1)[-1] in _SECRET_KEYS:
            return {"path": self.path, "kind": self.kind, "old": self.old and SECRET, "new": self.new and SECRET}
        return {"path": self.path, "kind": self.kind, "old": _plain(self.old), "new": _plain(self.new)}

    def __str__(self) -> str:
        if self.kind == "changed":
            if self.path.endswith(_ORDERED_SUFFIXES) and isinstance(self.old, tuple):
                return f"~ {self.path}: order {','.join(self.old)} -> {','.join(self.new)}"
            return f"~ {self.path}: {_show(self.path, self.old)} -> {_show(self.path, self.new)}"
        sign, value = ("+", self.new) if self.kind == "added" else ("-", self.old)
        if is_dataclass(value) and not isinstance(value, Address):
            return f"{sign} {self.path}"
        return f"{sign} {self.path}: {_show(self.path, value)}"


def diff(old: Spec, new: Spec) -> list[Change]:
    """Every difference from ``old`` to ``new`` (empty when they are equal)."""
    out: list[Change] = []
    if old != new:
        _object(out, "", old, new)
    return out


def format_diff(changes: Iterable[Change]) -> str:
    """One line per change: ``+ path``, ``- path``, ``~ path: old -> new``."""
    return "\n".join(str(change) for change in changes)


# -- walking ----------------------------------------------------------------------------------


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _comparable(obj: Any, only: tuple[str, ...] | None) -> Iterable[tuple[str, Any]]:
    """(field, value) pairs to compare, the way the file writes them."""
    for field in fields(obj):
        if not field.compare or (only is not None and field.name not in only):
            continue
        name = field.name
        if isinstance(obj, Pool) and name == "hash_header":
            continue
        if isinstance(obj, Pool) and name == "algorithm":
            yield name, obj.algorithm_text
        elif isinstance(obj, Acl) and name == "condition":
            yield name, (obj.condition, obj.source)
        elif isinstance(obj, Acl) and name == "source":
            continue
        else:
            yield name, getattr(obj, name)


def _object(out: list[Change], path: str, old: Any, new: Any, only: tuple[str, ...] | None = None) -> None:
    for (name, a), (_, b) in zip(_comparable(old, only), _comparable(new, only)):
        if a == b:
            continue
        sub = _join(path, name)
        if name in _KEYED and isinstance(a, tuple):
            key, ordered = _KEYED[name]
            _keyed(out, sub, a, b, key, ordered)
        elif name in _HEADER_MAPS:
            _headers(out, sub, dict(a), dict(b))
        elif isinstance(old, Acl) and name == "condition":
            out.append(Change(sub, "changed", a[1], b[1]))
        elif a is None:
            out.append(Change(sub, "added", None, b))
        elif b is None:
            out.append(Change(sub, "removed", a, None))
        elif is_dataclass(a) and type(a) is type(b) and not isinstance(a, Address):
            # A listener's backend timeouts and a pool's frontend ones are copies of
            # defaults that neither uses (nor writes out): not a change of theirs.
            keys = _TIMEOUT_KEYS.get(type(old)) if name == "timeouts" else None
            _object(out, sub, a, b, keys)
        else:
            out.append(Change(sub, "changed", a, b))


def _keyed(out: list[Change], path: str, old: Sequence[Any], new: Sequence[Any], key: str, ordered: bool) -> None:
    olds = {getattr(item, key): item for item in old}
    news = {getattr(item, key): item for item in new}
    for name, item in olds.items():
        if name not in news:
            out.append(Change(f"{path}[{name}]", "removed", item, None))
    for name, item in news.items():
        if name not in olds:
            out.append(Change(f"{path}[{name}]", "added", None, item))
        elif olds[name] != item:
            _object(out, f"{path}[{name}]", olds[name], item)
    if ordered:
        kept_old = [name for name in olds if name in news]
        kept_new = [name for name in news if name in olds]
        if kept_old != kept_new:
            out.append(Change(path, "changed", tuple(olds), tuple(news)))


def _headers(out: list[Change], path: str, old: dict[str, str], new: dict[str, str]) -> None:
    lower_old = {name.lower(): (name, value) for name, value in old.items()}
    lower_new = {name.lower(): (name, value) for name, value in new.items()}
    for lower, (name, value) in lower_old.items():
        if lower not in lower_new:
            out.append(Change(f"{path}[{name}]", "removed", value, None))
    for lower, (name, value) in lower_new.items():
        if lower not in lower_old:
            out.append(Change(f"{path}[{name}]", "added", None, value))
        elif lower_old[lower] != (name, value):
            out.append(Change(f"{path}[{name}]", "changed", lower_old[lower][1], value))


# -- showing values --------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Address):
        return str(value)
    if hasattr(value, "to_dict"):
        return _redact(value.to_dict())
    return thaw(value)


# Secrets (a key's passphrase) never show in a diff: only whether one is set.
_SECRET_KEYS = frozenset({"passphrase"})
SECRET = "(secret)"


def _redact(data: Any) -> Any:
    if isinstance(data, dict):
        return {key: (SECRET if key in _SECRET_KEYS and item is not None else _redact(item)) for key, item in data.items()}
    if isinstance(data, list):
        return [_redact(item) for item in data]
    return data


def _show(path: str, value: Any) -> str:
    leaf = path.rsplit(".", 1)[-1]
    if value is None:
        return "none"
    if leaf in _SECRET_KEYS:
        return SECRET
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and leaf in _DURATIONS:
        return format_duration(value)
    if isinstance(value, (int, float, Address)):
        return str(value)
    if isinstance(value, str):
        return value if value and not any(ch.isspace() or ch in "\"'," for ch in value) else json.dumps(value)
    if isinstance(value, tuple) and all(isinstance(item, str) for item in value):
        return ",".join(value) if value else "none"
    return json.dumps(_plain(value), sort_keys=True, separators=(", ", ": "))

