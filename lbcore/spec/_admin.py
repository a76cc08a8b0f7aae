"""The operator surfaces of the Spec: the admin HTTP listener and the runtime socket.

In a file, ``admin`` sits at the top level::

    admin:
      bind: "127.0.0.1:9100"          # HTTP: /metrics, /stats, /stats.json, /stats.csv; null: none
      socket: /run/lbcore/lbcore.sock  # the runtime socket (lbcore ctl, socat); null: none
      stats_page: true                 # serve /stats, /stats.json, /stats.csv on bind
      metrics: true                    # serve /metrics on bind

Everything is off unless the file sets ``bind`` or ``socket``. The admin listener
has no authentication: bind it to a loopback or management address. Who may use the
socket is who may open its file (mode 600: the engine's user).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from lbcore.spec import _checks as v
from lbcore.spec._checks import FAILED, Issues, known, ok
from lbcore.spec._values import Address, Invalid, describe

__all__ = ["AdminSettings", "admin_bind_issues"]

UNIX_PATH_MAX = 107  # sun_path is 108 bytes on Linux, one for the terminating NUL


def socket_path(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise Invalid(f"expected an absolute path for the runtime socket, got {describe(value)}")
    if not value.startswith("/"):
        raise Invalid(f"invalid socket path {value!r}: the path must be absolute")
    if value.endswith("/"):
        raise Invalid(f"invalid socket path {value!r}: the path names a directory")
    if any(ord(ch) < 0x20 or ch == "\x7f" for ch in value):
        raise Invalid(f"invalid socket path {value!r}: control characters in the path")
    if len(value.encode()) > UNIX_PATH_MAX:
        raise Invalid(f"invalid socket path {value!r}: a unix socket path is at most {UNIX_PATH_MAX} bytes")
    return value


@dataclass(frozen=True, slots=True)
class AdminSettings:
    """Where operators watch and act: ``bind`` is the admin HTTP listener (Prometheus
    /metrics and the live stats page, each switched by its flag), ``socket`` the unix
    socket of the runtime API (``lbcore ctl``). None turns either off."""

    bind: Address | None = None
    socket: str | None = None
    stats_page: bool = True
    metrics: bool = True

    _FIELDS: ClassVar[dict[str, v.Validator]] = {
        "bind": v.optional(v.address),
        "socket": v.optional(socket_path),
        "stats_page": v.boolean,
        "metrics": v.boolean,
    }

    def __post_init__(self) -> None:
        v.settle(self)

    @staticmethod
    def _finish(values: dict[str, Any]) -> Issues:
        if values["bind"] not in (None, FAILED) and values["stats_page"] is False and values["metrics"] is False:
            return [("bind", "an admin listener with stats_page and metrics both off serves nothing: "
                             "turn one on, or set bind to null")]
        return []

    def to_dict(self) -> dict[str, Any]:
        return {
            "bind": str(self.bind) if self.bind else None,
            "socket": self.socket,
            "stats_page": self.stats_page,
            "metrics": self.metrics,
        }


def admin_bind_issues(admin: Any, listeners: Any) -> Issues:
    """The admin listener's address must not overlap a listener's."""
    bind = getattr(admin, "bind", None) if known(admin) else None
    if bind is None or not ok(bind) or not known(listeners):
        return []
    for listener in listeners:
        other = listener.bind
        if ok(other) and bind.overlaps(other):
            name = listener.name if known(listener.name) else "?"
            relation = "is already bound by" if bind == other else f"overlaps {other} of"
            return [("admin.bind", f"{bind} {relation} listener {name!r}")]
    return []
