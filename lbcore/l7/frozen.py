"""Frozen values that may be compiled: what ``dataclass(frozen=True)`` gives, by hand.

A frozen dataclass sets its fields with ``object.__setattr__`` past its own refusing
``__setattr__``. A compiled extension type with its own ``__setattr__`` refuses that
call (CPython's check against skipping a C-level override), so the classes that the
compiled request path reads as C structs (``Route``, ``MemberInfo``) set their fields
through the slot's descriptor instead: a member descriptor in the pure twin, the
field's getset descriptor once compiled. Their ``__setattr__``/``__delattr__`` raise
``FrozenInstanceError``, as a frozen dataclass does.
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError

__all__ = ["FrozenInstanceError", "set_field"]


def set_field(obj: object, name: str, value: object) -> None:
    """Set field ``name`` of a frozen ``obj`` (in its ``__init__``)."""
    getattr(type(obj), name).__set__(obj, value)
