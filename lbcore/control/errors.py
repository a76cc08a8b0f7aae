"""What the control plane's service refuses with: each error carries its HTTP status.

The REST layer maps ``ControlError.status`` to the response code and
``ControlError.to_dict()`` to the body; nothing here ever quotes a private key or
passphrase (messages name fields, ids and Spec paths only).

- ``NotFound`` (404): no such object, or one that belongs to another tenant.
- ``Forbidden`` (403): the caller may see the object but not do this (admin-only).
- ``Conflict`` (409): the model refuses the change as it stands (a duplicate
  listener port on an instance, a pool still bound, a cluster mid-change).
- ``PreconditionFailed`` (412): If-Match does not match the current ETag.
- ``Invalid`` (422): bad input or a Spec that would not validate; ``errors`` lists
  every problem as ``(field_path, message)``.
"""

from __future__ import annotations

from typing import Any, Iterable

__all__ = ["ControlError", "Conflict", "Forbidden", "Invalid", "NotFound", "PreconditionFailed"]


class ControlError(Exception):
    """Base of every refusal; ``status`` is the HTTP status to answer with."""

    status = 500
    title = "control plane error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "title": self.title, "detail": self.message}


class NotFound(ControlError):
    status = 404
    title = "not found"

    def __init__(self, kind: str, id: str) -> None:
        super().__init__(f"{kind} {id} not found")
        self.kind = kind
        self.id = id


class Forbidden(ControlError):
    status = 403
    title = "forbidden"


class Conflict(ControlError):
    status = 409
    title = "conflict"


class PreconditionFailed(ControlError):
    status = 412
    title = "precondition failed"

    def __init__(self, expected: str, current: str) -> None:
        super().__init__(f"If-Match {expected} does not match the current ETag {current}")
        self.expected = expected
        self.current = current


class Invalid(ControlError):
    """``errors``: ``[(field_path, message)]``, e.g. ``("port", "must be 1..65535")`` or,
    for a Spec the change would produce, ``("listeners[web-1a2b3c4d].acls[api-5e6f7a8b].condition",
    "unknown fetch 'hots'")`` (Spec paths name listeners, pools, acls and members by
    their Spec names)."""

    status = 422
    title = "invalid"

    def __init__(self, errors: Iterable[tuple[str, str]]) -> None:
        self.errors: list[tuple[str, str]] = [(str(path), str(message)) for path, message in errors]
        super().__init__("; ".join(f"{path}: {message}" if path else message for path, message in self.errors))

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["errors"] = [{"path": path, "message": message} for path, message in self.errors]
        return out
