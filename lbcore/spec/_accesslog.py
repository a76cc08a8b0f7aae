"""Access-log settings of the Spec: what format, where to, and the syslog identity.

In a file, ``access_log`` sits on ``defaults`` and on each listener::

    defaults:
      access_log: {format: json, target: "syslog+udp://127.0.0.1:514", facility: local0, tag: lbcore}
    listeners:
      - name: web
        access_log: {format: text}            # defaults' target, text lines
      - name: quiet
        access_log: null                      # or {enabled: false}: no log for this one

The checks here are the field validators; the cascade (defaults -> listener, key by
key) is in ``_parse``. Off unless some level turns it on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from lbcore.spec import _checks as v
from lbcore.spec._checks import FAILED, Issues
from lbcore.spec._values import Address, Invalid, describe, did_you_mean

__all__ = ["AccessLogSettings", "LogTarget", "LOG_FORMATS", "SYSLOG_FACILITIES", "parse_log_target"]

LOG_FORMATS = ("json", "text")
# RFC 5424 6.2.1 facility codes, named as syslog(3) and haproxy's `log ... FACILITY` name them.
SYSLOG_FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
    "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "audit": 13, "alert": 14, "cron2": 15,
    "local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}
SYSLOG_KINDS = ("syslog+udp", "syslog+tcp", "syslog+unix")
SYSLOG_NETWORK_KINDS = ("syslog+udp", "syslog+tcp")  # an address, not a path
SYSLOG_ONLY_KEYS = ("facility", "tag")  # what only a syslog target uses
DEFAULT_SYSLOG_PORT = 514  # RFC 5426 3.3 (UDP); rsyslog and syslog-ng listen for TCP there too
UNIX_PATH_MAX = 107  # sun_path is 108 bytes on Linux, one for the terminating NUL
APP_NAME_MAX = 48  # RFC 5424 6.2.5: APP-NAME = 1*48PRINTUSASCII
DEFAULT_FACILITY = "local0"  # haproxy's and nginx's usual choice for traffic logs
DEFAULT_TAG = "lbcore"
_TARGET_HELP = "stdout, file:/PATH, syslog+udp://IP[:PORT], syslog+tcp://IP[:PORT] or syslog+unix:///PATH"


@dataclass(frozen=True, slots=True)
class LogTarget:
    """A target split into its parts: ``kind`` is stdout, file, syslog+udp,
    syslog+tcp or syslog+unix; ``path`` for file and syslog+unix, ``address`` for
    syslog+udp and syslog+tcp."""

    kind: str
    path: str | None = None
    address: Address | None = None

    @property
    def is_syslog(self) -> bool:
        return self.kind in SYSLOG_KINDS

    def __str__(self) -> str:
        if self.kind == "file":
            return f"file:{self.path}"
        if self.kind in SYSLOG_NETWORK_KINDS:
            return f"{self.kind}://{self.address}"
        if self.kind == "syslog+unix":
            return f"syslog+unix://{self.path}"
        return self.kind


def _absolute_path(path: str, text: str) -> str:
    if not path.startswith("/"):
        raise Invalid(f"invalid target {text!r}: the path must be absolute")
    if any(ord(ch) < 0x20 or ch == "\x7f" for ch in path):
        raise Invalid(f"invalid target {text!r}: control characters in the path")
    if path.endswith("/"):
        raise Invalid(f"invalid target {text!r}: the path names a directory")
    return path


def parse_log_target(value: Any) -> LogTarget:
    """``stdout``, ``file:/var/log/lbcore/access.log`` (also ``file:///...``),
    ``syslog+udp://127.0.0.1[:514]`` (``[::1]:514`` for IPv6; names are not resolved),
    ``syslog+tcp://`` the same, ``syslog+unix:///dev/log``."""
    if isinstance(value, LogTarget):
        return value
    if not isinstance(value, str):
        raise Invalid(f"expected a log target ({_TARGET_HELP}), got {describe(value)}")
    text = value.strip()
    if text == "stdout":
        return LogTarget("stdout")
    scheme, sep, rest = text.partition(":")
    if not sep or scheme not in ("file", *SYSLOG_KINDS):
        hint = did_you_mean(scheme, ("stdout", "file", *SYSLOG_KINDS)) if sep else did_you_mean(text, ("stdout",))
        raise Invalid(f"invalid target {value!r} ({_TARGET_HELP}){hint}")
    if scheme == "file":
        path = rest[2:] if rest.startswith("///") else rest
        return LogTarget("file", path=_absolute_path(path, value))
    if not rest.startswith("//"):
        raise Invalid(f"invalid target {value!r} (expected {scheme}://...)")
    rest = rest[2:]
    if scheme == "syslog+unix":
        path = _absolute_path(rest, value)
        if len(path.encode()) > UNIX_PATH_MAX:
            raise Invalid(f"invalid target {value!r}: a unix socket path is at most {UNIX_PATH_MAX} bytes")
        return LogTarget("syslog+unix", path=path)
    if not rest:
        raise Invalid(f"invalid target {value!r}: no address")
    bracketed = rest.startswith("[")
    has_port = rest.rpartition("]")[2].startswith(":") if bracketed else ":" in rest
    if not has_port:
        rest = f"{rest}:{DEFAULT_SYSLOG_PORT}"
    try:
        address = Address.parse(rest)
    except Invalid as exc:
        raise Invalid(f"invalid target {value!r}: {exc.message}") from None
    return LogTarget(scheme, address=address)


def log_target(value: Any) -> str:
    """The canonical text of a target (``syslog+udp://127.0.0.1`` -> ``...:514``)."""
    return str(parse_log_target(value))


def app_name(value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= APP_NAME_MAX or any(not 33 <= ord(ch) <= 126 for ch in value):
        shown = repr(value) if isinstance(value, str) else describe(value)
        raise Invalid(f"invalid tag {shown} (1 to {APP_NAME_MAX} printable ASCII characters, no spaces: RFC 5424 APP-NAME)")
    return value


@dataclass(frozen=True, slots=True)
class AccessLogSettings:
    """One access log: a line per HTTP request (per connection on tcp listeners).

    - ``format``: ``json`` (one object per line) or ``text`` (haproxy's httplog and
      tcplog layouts; see ``lbcore.proxy.accesslog``).
    - ``target``: ``stdout``; ``file:/PATH`` (appended to, reopened on SIGUSR1 for
      logrotate); ``syslog+udp://IP[:PORT]`` (port 514 by default; a datagram per
      line); ``syslog+tcp://IP[:PORT]`` (RFC 6587 octet-counted framing, a batch of
      lines per write: the cheapest at high request rates); or ``syslog+unix:///PATH``
      (a datagram socket such as /dev/log). Syslog messages are RFC 5424.
    - ``facility`` (local0..local7, daemon, ...) and ``tag`` (the APP-NAME): syslog
      targets only; another target keeps the built-in values.
    - ``enabled``: false keeps the settings (on ``defaults``, for listeners to turn
      on with ``access_log: {}``) without logging.

    Buffered per worker and written in batches off the request path; when the target
    cannot keep up the oldest lines are dropped and counted, never waited for.
    """

    enabled: bool = True
    format: str = "json"
    target: str = "stdout"
    facility: str = DEFAULT_FACILITY
    tag: str = DEFAULT_TAG

    _FIELDS: ClassVar[dict[str, v.Validator]] = {
        "enabled": v.boolean,
        "format": v.choice(LOG_FORMATS),
        "target": log_target,
        "facility": v.choice(SYSLOG_FACILITIES),
        "tag": app_name,
    }

    def __post_init__(self) -> None:
        v.settle(self)

    @staticmethod
    def _finish(values: dict[str, Any]) -> Issues:
        target = values["target"]
        if target is not FAILED and not parse_log_target(target).is_syslog:
            # Not used without syslog: one canonical value, so equal logs compare equal.
            for key, default in (("facility", DEFAULT_FACILITY), ("tag", DEFAULT_TAG)):
                if values[key] is not FAILED:
                    values[key] = default
        return []

    @property
    def sink(self) -> LogTarget:
        return parse_log_target(self.target)

    @property
    def priority_facility(self) -> int:
        return SYSLOG_FACILITIES[self.facility]

    def to_dict(self) -> dict[str, Any]:
        keys = self._FIELDS if self.sink.is_syslog else [key for key in self._FIELDS if key not in SYSLOG_ONLY_KEYS]
        return {key: getattr(self, key) for key in keys}


def listener_access_log(value: Any) -> AccessLogSettings | None:
    """A listener's resolved log: None when off (``{enabled: false}`` is the same as null)."""
    if value is None:
        return None
    if not isinstance(value, AccessLogSettings):
        raise Invalid(f"expected AccessLogSettings, got {describe(value)}")
    return value if value.enabled else None
