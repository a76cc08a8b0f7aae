"""The Spec dataclasses: frozen, slotted, hashable, checked and made canonical on creation.

Each class carries ``_FIELDS`` (field -> validator, see ``_checks``) and, when some
rule spans fields, ``_finish``. ``to_dict`` gives the canonical file form; a listener
writes only the timeouts a listener may set, a pool only those a pool may set, so
that reading the output back gives the same Spec.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Iterator, get_args

from lbcore.l7.acl import Condition, parse_condition
from lbcore.l7.balance import ALGORITHMS
from lbcore.spec import _checks as v
from lbcore.spec._accesslog import AccessLogSettings, listener_access_log
from lbcore.spec._admin import AdminSettings, admin_bind_issues
from lbcore.spec._checks import FAILED, Issues, known, ok, settle
from lbcore.spec._errors import join_path
from lbcore.spec._tls import PoolTls, TlsCertificate, TlsPolicy, TlsSettings
from lbcore.spec._values import Address, check_port, parse_status_ranges, thaw

__all__ = [
    "Acl",
    "Defaults",
    "HealthCheck",
    "Limits",
    "Listener",
    "Member",
    "Outlier",
    "Persistence",
    "Pool",
    "Redirect",
    "Spec",
    "Timeouts",
    "TlsCertificate",
    "TlsSettings",
    "PROTOCOLS",
    "ADMIN_STATES",
]

PROTOCOLS = ("http", "https", "tcp", "tls-passthrough")
HTTP_PROTOCOLS = ("http", "https")
# How a listener's connections reach the workers. "shared": one listening socket that
# every worker accepts from (the first to wake takes the connection). "per-worker": one
# socket per worker on the same address (SO_REUSEPORT), the kernel spreading
# connections evenly over them by their addresses (haproxy's "shards by-thread").
SHARDS = ("shared", "per-worker")
ADMIN_STATES = ("enabled", "drain", "maint")
HEALTH_TYPES = ("tcp", "http", "https", "tls-hello")
HTTP_CHECK_KEYS = ("path", "method", "host", "expect")  # what only http and https checks use
PERSISTENCE_TYPES = ("cookie", "source")
REDIRECT_CODES = (301, 302, 303, 307, 308)
DEFAULT_FORWARDED = ("x-forwarded-for", "x-forwarded-proto")
DEFAULT_MAXCONN = 10000  # concurrent client connections per listener
_CONDITION_NODES = get_args(Condition)
# What a layer-4 listener can route on: it sees the client address and, with
# tls-passthrough, the ClientHello's server name; nothing of HTTP.
L4_FETCHES = {"tcp": frozenset({"src"}), "tls-passthrough": frozenset({"src", "ssl_sni"})}


def fetches_used(condition: Any) -> frozenset[str]:
    """The fetches (src, host, path, ...) a condition AST reads."""
    fetch = getattr(condition, "fetch", None)
    if fetch is not None:
        return frozenset({fetch})
    children = getattr(condition, "items", None)
    if children is None:
        child = getattr(condition, "item", None)
        children = () if child is None else (child,)
    return frozenset().union(*map(fetches_used, children))


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds. The frontend side (client, http_request, keepalive, drain) is set per
    listener; the backend side (connect, server, tunnel) per pool: one pool may serve
    many listeners, so a backend timeout has one value per pool."""

    connect: float = 5.0  # TCP connect to a member
    client: float = 30.0  # client idle while a request or response is in flight
    server: float = 30.0  # member idle while a response is awaited or streamed
    http_request: float = 10.0  # whole request head from the client
    keepalive: float = 60.0  # idle client connection between requests
    tunnel: float = 3600.0  # idle upgraded (WebSocket) or CONNECT-style tunnel, tcp
    drain: float = 30.0  # how long a reload lets old connections finish

    LISTENER_KEYS: ClassVar[tuple[str, ...]] = ("client", "http_request", "keepalive", "drain")
    POOL_KEYS: ClassVar[tuple[str, ...]] = ("connect", "server", "tunnel")
    _FIELDS: ClassVar[dict[str, v.Validator]] = {
        "connect": v.duration(),
        "client": v.duration(),
        "server": v.duration(),
        "http_request": v.duration(),
        "keepalive": v.duration(),
        "tunnel": v.duration(),
        "drain": v.duration(positive=False),
    }

    def __post_init__(self) -> None:
        settle(self)

    def to_dict(self, keys: tuple[str, ...] | None = None) -> dict[str, float]:
        return {key: getattr(self, key) for key in (keys or self._FIELDS)}


@dataclass(frozen=True, slots=True)
class Limits:
    """HTTP parsing limits, bytes (max_headers is a count). max_body None = unlimited.
    The defaults are nginx's large_client_header_buffers line (8 KiB) and a 32 KiB head,
    below haproxy's 16 KiB tune.bufsize per header block times two."""

    max_request_line: int = 8192
    max_header_bytes: int = 32768
    max_headers: int = 100
    max_body: int | None = None

    _FIELDS: ClassVar[dict[str, v.Validator]] = {
        "max_request_line": v.size(low=16),
        "max_header_bytes": v.size(low=64),
        "max_headers": v.integer(1, 10000),
        "max_body": v.optional(v.size(low=0)),
    }

    def __post_init__(self) -> None:
        settle(self)

    def to_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self._FIELDS}


@dataclass(frozen=True, slots=True)
class Redirect:
    """Answer every request with a redirect to the same path and query, changing the
    scheme, host or port given (a None keeps the request's own)."""

    code: int = 301
    scheme: str | None = None
    host: str | None = None
    port: int | None = None

    _FIELDS: ClassVar[dict[str, v.Validator]] = {
        "code": v.choice(REDIRECT_CODES),
        "scheme": v.optional(v.choice(("http", "https"))),
        "host": v.optional(v.hostname),
        "port": v.optional(v.integer(1, 65535)),
    }

    def __post_init__(self) -> None:
        settle(self)

    @staticmethod
    def _finish(values: dict[str, Any]) -> Issues:
        if all(values[key] is None for key in ("scheme", "host", "port")):
            return [("", "a redirect needs a scheme, host or port to change (else it loops)")]
        return []

    def to_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self._FIELDS}


@dataclass(frozen=True, slots=True)
class Acl:
    """Send a request to ``pool`` when ``condition`` holds. ``source`` is the condition
    as written (a string, or a mapping kept as a FrozenDict), for display and output."""

    name: str
    condition: Any
    pool: str
    source: Any

    _FIELDS: ClassVar[dict[str, v.Validator]] = {
        "name": v.name,
        "condition": v.callable_check(lambda c: isinstance(c, _CONDITION_NODES), "expected a parsed condition"),
        "pool": v.name,
        "source": v.frozen_source,
    }

    def __post_init__(self) -> None:
        settle(self)

    @classmethod
    def of(cls, name: str, source: Any, pool: str) -> "Acl":
        """An Acl from a condition as written (raises AclError if it does not parse)."""
        return cls(name, parse_condition(source), pool, source)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "condition": thaw(self.source), "pool": self.pool}


@dataclass(frozen=True, slots=True)
class Listener:
    """One service on one address and port.

    http/https: each request goes to the pool of the first ACL that matches, else to
    ``default_pool`` (none: 503), or, with ``redirect``, every request is redirected.
    tcp/tls-passthrough: each connection, by ACLs on ``src`` (and ``ssl_sni`` for
    tls-passthrough), else to ``default_pool``.
    """

    name: str
    bind: Address
    protocol: str = "http"
    acls: tuple[Acl, ...] = ()
    default_pool: str | None = None
    timeouts: Timeouts = Timeouts()
    limits: Limits = Limits()
    maxconn: int = DEFAULT_MAXCONN
    backlog: int = 1024
    shards: str = "shared"
    forwarded_headers: tuple[str, ...] = DEFAULT_FORWARDED
    add_headers: tuple[tuple[str, str], ...] = ()
    response_headers: tuple[tuple[str, str], ...] = ()
    redirect: Redirect | None = None
    tls: TlsSettings | None = None
    access_log: AccessLogSettings | None = None  # None: off

    _FIELDS: ClassVar[dict[str, v.Validator]] = {
        "name": v.name,
        "bind": v.address,
        "protocol": v.choice(PROTOCOLS),
        "acls": v.tuple_of(Acl),
        "default_pool": v.optional(v.name),
        "timeouts": v.instance(Timeouts),
        "limits": v.instance(Limits),
        "maxconn": v.integer(1, 10_000_000),
        "backlog": v.integer(1, 65535),
        "shards": v.choice(SHARDS),
        "forwarded_headers": v.forwarded_headers,
        "add_headers": v.header_pairs,
        "response_headers": v.header_pairs,
        "redirect": v.optional(v.instance(Redirect)),
        "tls": v.optional(v.instance(TlsSettings)),
        "access_log": listener_access_log,
    }

    def __post_init__(self) -> None:
        settle(self)

    @staticmethod
    def _finish(values: dict[str, Any]) -> Issues:
        issues: Issues = []
        protocol, acls, tls, redirect = values["protocol"], values["acls"], values["tls"], values["redirect"]
        default_pool = values["default_pool"]
        if known(acls):
            issues.extend(("acls" + path, message) for path, message in v.duplicates(
                ((i, acl.name) for i, acl in enumerate(acls)), "acl", "acls"))
        if protocol is FAILED:
            return issues
        if protocol == "https" and tls is None:
            issues.append(("tls", "an https listener needs tls (its certificates)"))
        if protocol != "https" and tls not in (None, FAILED):
            issues.append(("tls", f"only an https listener takes tls (this one is {protocol})"))
        if protocol in HTTP_PROTOCOLS:
            if redirect not in (None, FAILED):
                if (known(acls) and acls) or default_pool not in (None, FAILED):
                    issues.append(("redirect", "a redirect listener redirects every request: it takes no acls or default_pool"))
            elif redirect is None and known(acls) and not acls and default_pool is None:
                issues.append(("", f"an {protocol} listener needs a default_pool, acls or a redirect"))
            return issues
        # Layer 4 from here: tcp and tls-passthrough.
        values["forwarded_headers"] = ()
        if redirect not in (None, FAILED):
            issues.append(("redirect", "only http and https listeners redirect"))
        for key in ("add_headers", "response_headers"):
            if values[key] not in ((), FAILED):
                issues.append((key, "only http and https listeners set headers"))
        if default_pool is None:
            issues.append(("default_pool", f"a {protocol} listener needs a default_pool"))
        if known(acls):
            allowed = L4_FETCHES[protocol]
            for index, acl in enumerate(acls):
                if not ok(acl.condition):
                    continue
                extra = sorted(fetches_used(acl.condition) - allowed)
                if extra:
                    issues.append((
                        f"acls[{index}].condition",
                        f"a {protocol} listener can only match on {' and '.join(sorted(allowed))} (found {', '.join(extra)})",
                    ))
        return issues

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "bind": str(self.bind),
            "protocol": self.protocol,
            "acls": [acl.to_dict() for acl in self.acls],
            "default_pool": self.default_pool,
            "timeouts": self.timeouts.to_dict(Timeouts.LISTENER_KEYS),
            "limits": self.limits.to_dict(),
            "maxconn": self.maxconn,
            "backlog": self.backlog,
            "shards": self.shards,
            "forwarded_headers": list(self.forwarded_headers),
            "add_headers": dict(self.add_headers),
            "response_headers": dict(self.response_headers),
            "redirect": self.redirect.to_dict() if self.redirect else None,
            "tls": self.tls.to_dict() if self.tls else None,
            "access_log": self.access_log.to_dict() if self.access_log else None,
        }


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """How a pool's members are checked: every ``interval`` (spread by +-``jitter`` of
    it), a member goes up after ``rise`` passes in a row and down after ``fall`` fails.
    ``expect`` is the accepted statuses of http/https checks, like ``200-299,302``."""

    type: str
    interval: float = 2.0
    timeout: float = 1.0
    rise: int = 2
    fall: int = 3
    path: str = "/"
    method: str = "GET"
    host: str | None = None
    expect: str = "200-399"
    jitter: float = 0.1

    _FIELDS: ClassVar[dict[str, v.Validator]] = {
        "type": v.choice(HEALTH_TYPES),
        "interval": v.duration(),
        "timeout": v.duration(),
        "rise": v.integer(1, 100),
        "fall": v.integer(1, 100),
        "path": v.url_path,
        "method": v.http_method,
        "host": v.optional(v.host_header),
        "expect": v.status_ranges,
        "jitter": v.fraction(0.0, 1.0),
    }

    def __post_init__(self) -> None:
        settle(self)

    @staticmethod
    def _finish(values: dict[str, Any]) -> Issues:
        interval, timeout = values["interval"], values["timeout"]
        if ok(interval, timeout) and timeout > interval:
            return [("timeout", f"must not exceed interval ({interval:g}s)")]
        return []

    def accepts(self, status: int) -> bool:
        """Whether an http/https check answered with ``status`` passes."""
        return any(low <= status <= high for low, high in parse_status_ranges(self.expect))

    def to_dict(self) -> dict[str, Any]:
        keys = self._FIELDS if self.type in ("http", "https") else [k for k in self._FIELDS if k not in HTTP_CHECK_KEYS]
        return {key: getattr(self, key) for key in keys}


@dataclass(frozen=True, slots=True)
class Persistence:
    """Sticky sessions: ``cookie`` (the engine sets cookie ``name`` to the member's name)
    or ``source`` (client address -> member, entries expire after ``timeout`` idle)."""

    type: str
    name: str = "SRV"
    timeout: float = 1800.0

    _FIELDS: ClassVar[dict[str, v.Validator]] = {
        "type": v.choice(PERSISTENCE_TYPES),
        "name": v.cookie_name,
        "timeout": v.duration(),
    }

    def __post_init__(self) -> None:
        settle(self)

    def to_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self._FIELDS}


@dataclass(frozen=True, slots=True)
class Outlier:
    """Passive checks (outlier ejection), off unless a pool sets ``outlier``.

    A worker counts, per member, failures in a row: ``consecutive_errors`` connection
    errors (connect refused or timed out, reset, no or a broken response within the
    server timeout), and ``consecutive_5xx`` failures of any kind, 5xx responses and
    connection errors alike (as Envoy's consecutive_5xx); 0 turns a count off, and at
    least one of the two is more than 0. Reaching either marks the member down at
    once, for every worker. It comes back through the active check (``rise`` passes) when
    the pool has ``health``, else after ``ejection_time``.
    File form: ``outlier: {consecutive_errors: 5, consecutive_5xx: 0, ejection_time: 30s}``;
    ``outlier: {}`` takes these defaults (Envoy's consecutive errors and base ejection time).
    """

    consecutive_errors: int = 5
    consecutive_5xx: int = 0
    ejection_time: float = 30.0

    _FIELDS: ClassVar[dict[str, v.Validator]] = {
        "consecutive_errors": v.integer(0, 10000),
        "consecutive_5xx": v.integer(0, 10000),
        "ejection_time": v.duration(),
    }

    def __post_init__(self) -> None:
        settle(self)

    @staticmethod
    def _finish(values: dict[str, Any]) -> Issues:
        errors, fives = values["consecutive_errors"], values["consecutive_5xx"]
        if ok(errors, fives) and errors == 0 and fives == 0:
            return [("", "consecutive_errors and consecutive_5xx are both 0: nothing would eject (write outlier: null for off)")]
        return []

    def to_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self._FIELDS}


@dataclass(frozen=True, slots=True)
class Member:
    """One backend server. weight 0 takes no new traffic (like drain, but by weight);
    a backup member serves only when no primary is up. Health checks go to
    ``address``, or to ``monitor_address`` (another host and port), or to
    ``monitor_port`` (the same host, another port), as Octavia's monitor_address and
    monitor_port; ``check_address`` is the result."""

    name: str
    address: Address
    weight: int = 1
    backup: bool = False
    admin_state: str = "enabled"
    monitor_address: Address | None = None
    monitor_port: int | None = None

    _FIELDS: ClassVar[dict[str, v.Validator]] = {
        "name": v.name,
        "address": v.address,
        "weight": v.integer(0, 256),
        "backup": v.boolean,
        "admin_state": v.choice(ADMIN_STATES),
        "monitor_address": v.optional(v.address),
        "monitor_port": v.optional(check_port),
    }

    def __post_init__(self) -> None:
        settle(self)

    @staticmethod
    def _finish(values: dict[str, Any]) -> Issues:
        where, port = values["monitor_address"], values["monitor_port"]
        if where not in (None, FAILED) and port not in (None, FAILED):
            return [("monitor_port", f"monitor_address {where} has its own port: set monitor_address or monitor_port, not both")]
        return []

    @property
    def check_address(self) -> Address:
        """Where health checks go: monitor_address, else address with monitor_port, else address."""
        if self.monitor_address is not None:
            return self.monitor_address
        if self.monitor_port is not None:
            return Address(self.address.host, self.monitor_port)
        return self.address

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": str(self.address),
            "weight": self.weight,
            "backup": self.backup,
            "admin_state": self.admin_state,
            "monitor_address": str(self.monitor_address) if self.monitor_address else None,
            "monitor_port": self.monitor_port,
        }


@dataclass(frozen=True, slots=True)
class Pool:
    """A set of members and how to choose among them. A pool with no member answers 503.

    ``health`` is the active check, ``outlier`` the passive one (both off by default:
    a member of a pool with neither is always taken as up). ``slow_start`` (0 = off):
    a member that comes up has its weight ramped from about 0 (at least 1) to its
    full weight over that time, like haproxy's slowstart."""

    name: str
    algorithm: str = "roundrobin"
    hash_header: str | None = None
    persistence: Persistence | None = None
    health: HealthCheck | None = None
    members: tuple[Member, ...] = ()
    timeouts: Timeouts = Timeouts()
    max_connections_per_member: int = 0  # concurrent connections to one member; 0 = no limit
    idle_connections_per_member: int = 256  # idle keep-alive connections kept for reuse (per worker)
    retries: int = 2  # connect attempts after the first, each to another member if one is up
    outlier: Outlier | None = None
    slow_start: float = 0.0
    tls: PoolTls | None = None  # TLS to the members (re-encryption); None: plain TCP

    _FIELDS: ClassVar[dict[str, v.Validator]] = {
        "name": v.name,
        "algorithm": v.choice(ALGORITHMS),
        "hash_header": v.optional(lambda value: v.header_name(value).lower()),
        "persistence": v.optional(v.instance(Persistence)),
        "health": v.optional(v.instance(HealthCheck)),
        "members": v.tuple_of(Member),
        "timeouts": v.instance(Timeouts),
        "max_connections_per_member": v.integer(0, 1_000_000),
        "idle_connections_per_member": v.integer(0, 100_000),
        "retries": v.integer(0, 100),
        "outlier": v.optional(v.instance(Outlier)),
        "slow_start": v.duration(positive=False),
        "tls": v.optional(v.instance(PoolTls)),
    }

    def __post_init__(self) -> None:
        settle(self)

    @staticmethod
    def _finish(values: dict[str, Any]) -> Issues:
        issues: Issues = []
        algorithm, header = values["algorithm"], values["hash_header"]
        if algorithm == "hdr" and header is None:
            issues.append(("algorithm", "hdr needs a header name: hdr(NAME)"))
        elif ok(algorithm) and algorithm != "hdr" and header not in (None, FAILED):
            issues.append(("hash_header", f"only the hdr algorithm hashes a header (algorithm is {algorithm})"))
        members = values["members"]
        if known(members):
            issues.extend(("members" + path, message) for path, message in v.duplicates(
                ((i, member.name) for i, member in enumerate(members)), "member", "members"))
        return issues

    @property
    def algorithm_text(self) -> str:
        """The algorithm as a file writes it: ``hdr(x-user)`` or ``roundrobin``."""
        return f"hdr({self.hash_header})" if self.algorithm == "hdr" else self.algorithm

    def member(self, name: str) -> Member:
        for member in self.members:
            if member.name == name:
                return member
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "algorithm": self.algorithm_text,
            "persistence": self.persistence.to_dict() if self.persistence else None,
            "health": self.health.to_dict() if self.health else None,
            "outlier": self.outlier.to_dict() if self.outlier else None,
            "slow_start": self.slow_start,
            "members": [member.to_dict() for member in self.members],
            "timeouts": self.timeouts.to_dict(Timeouts.POOL_KEYS),
            "max_connections_per_member": self.max_connections_per_member,
            "idle_connections_per_member": self.idle_connections_per_member,
            "retries": self.retries,
            "tls": self.tls.to_dict() if self.tls else None,
        }


@dataclass(frozen=True, slots=True)
class Defaults:
    """The lowest level of the cascade; what a listener or pool does not set."""

    timeouts: Timeouts = Timeouts()
    limits: Limits = Limits()
    forwarded_headers: tuple[str, ...] = DEFAULT_FORWARDED
    maxconn: int = DEFAULT_MAXCONN
    access_log: AccessLogSettings | None = None  # what listeners inherit; may be enabled: false
    tls: TlsPolicy = TlsPolicy()  # the TLS policy https listeners inherit (no certificates)

    _FIELDS: ClassVar[dict[str, v.Validator]] = {
        "timeouts": v.instance(Timeouts),
        "limits": v.instance(Limits),
        "forwarded_headers": v.forwarded_headers,
        "maxconn": v.integer(1, 10_000_000),
        "access_log": v.optional(v.instance(AccessLogSettings)),
        "tls": v.instance(TlsPolicy),
    }

    def __post_init__(self) -> None:
        settle(self)

    def to_dict(self) -> dict[str, Any]:
        return {
            "timeouts": self.timeouts.to_dict(),
            "limits": self.limits.to_dict(),
            "forwarded_headers": list(self.forwarded_headers),
            "maxconn": self.maxconn,
            "access_log": self.access_log.to_dict() if self.access_log else None,
            "tls": self.tls.to_dict(),
        }


def check_version(value: Any) -> int:
    if value != 1 or isinstance(value, bool) or not isinstance(value, int):
        raise v.Invalid(f"unsupported version {value!r} (this lbcore reads version 1)")
    return value


def spec_issues(listeners: Any, pools: Any) -> Issues:
    """Checks across listeners and pools: unique names, binds that do not overlap,
    pool references that exist. Works on Partials, skipping what failed."""
    issues: Issues = []
    if known(listeners):
        issues.extend(("listeners" + p, m) for p, m in v.duplicates(
            ((i, listener.name) for i, listener in enumerate(listeners)), "listener", "listeners"))
    if known(pools):
        issues.extend(("pools" + p, m) for p, m in v.duplicates(
            ((i, pool.name) for i, pool in enumerate(pools)), "pool", "pools"))
    if not known(listeners):
        return issues
    bound: list[tuple[Address, str]] = []
    for index, listener in enumerate(listeners):
        bind = listener.bind
        if not ok(bind):
            continue
        for other, owner in bound:
            if bind.overlaps(other):
                if bind == other:
                    message = f"{bind} is already bound by listener {owner!r}"
                else:
                    message = f"{bind} overlaps {other} of listener {owner!r}"
                issues.append((f"listeners[{index}].bind", message))
                break
        owner = listener.name if known(listener.name) else f"listeners[{index}]"
        bound.append((bind, owner))
    if not known(pools):
        return issues
    names = [pool.name for pool in pools if known(pool.name)]
    for index, listener in enumerate(listeners):
        refs: list[tuple[str, Any]] = [("default_pool", listener.default_pool)]
        if known(listener.acls):
            refs.extend((f"acls[{j}].pool", acl.pool) for j, acl in enumerate(listener.acls))
        for path, ref in refs:
            if ref not in (None, FAILED) and ref not in names:
                issues.append(
                    (join_path(f"listeners[{index}]", path), f"unknown pool {ref!r}{v.did_you_mean(ref, names)}")
                )
    return issues


@dataclass(frozen=True, slots=True)
class Spec:
    """A whole configuration, fully resolved: every cascading value is in place on the
    listener or pool that uses it. Listeners and pools are kept sorted by name."""

    version: int = 1
    defaults: Defaults = Defaults()
    listeners: tuple[Listener, ...] = ()
    pools: tuple[Pool, ...] = ()
    admin: AdminSettings = AdminSettings()  # the admin listener and runtime socket (off by default)
    _revision: str | None = field(default=None, init=False, repr=False, compare=False)

    _FIELDS: ClassVar[dict[str, v.Validator]] = {
        "version": check_version,
        "defaults": v.instance(Defaults),
        "listeners": v.tuple_of(Listener),
        "pools": v.tuple_of(Pool),
        "admin": v.instance(AdminSettings),
    }

    def __post_init__(self) -> None:
        settle(self)

    @staticmethod
    def _finish(values: dict[str, Any]) -> Issues:
        listeners, pools, defaults = values["listeners"], values["pools"], values["defaults"]
        issues = spec_issues(listeners, pools) + admin_bind_issues(values["admin"], listeners)
        if issues or not ok(listeners, pools, defaults) or not all(map(ok, listeners + pools)):
            return issues
        # Resolve: what a level may not set comes from defaults, so equal files give
        # equal Specs however a program built them.
        base = defaults.timeouts
        values["listeners"] = tuple(sorted(
            (replace(l, timeouts=_keep(base, l.timeouts, Timeouts.LISTENER_KEYS)) for l in listeners),
            key=lambda l: l.name,
        ))
        values["pools"] = tuple(sorted(
            (replace(p, timeouts=_keep(base, p.timeouts, Timeouts.POOL_KEYS)) for p in pools),
            key=lambda p: p.name,
        ))
        return issues

    @property
    def revision(self) -> str:
        """A content hash: sha256 of the canonical JSON of ``to_dict()``, 16 hex digits."""
        if self._revision is None:
            object.__setattr__(self, "_revision", revision_of(self.to_dict()))
        return self._revision  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "defaults": self.defaults.to_dict(),
            "listeners": [listener.to_dict() for listener in self.listeners],
            "pools": [pool.to_dict() for pool in self.pools],
            "admin": self.admin.to_dict(),
        }

    def pool(self, name: str) -> Pool:
        for pool in self.pools:
            if pool.name == name:
                return pool
        raise KeyError(name)

    def listener(self, name: str) -> Listener:
        for listener in self.listeners:
            if listener.name == name:
                return listener
        raise KeyError(name)

    def pools_of(self, listener: Listener) -> Iterator[Pool]:
        """The pools a listener can send to: its ACLs' in order, then its default."""
        seen = set()
        for name in [acl.pool for acl in listener.acls] + [listener.default_pool]:
            if name is not None and name not in seen:
                seen.add(name)
                yield self.pool(name)


def _keep(base: Timeouts, own: Timeouts, keys: tuple[str, ...]) -> Timeouts:
    """``base`` with ``own``'s values for ``keys``."""
    return replace(base, **{key: getattr(own, key) for key in keys})


def revision_of(data: dict[str, Any]) -> str:
    """sha256 over canonical JSON (sorted keys, no spaces), first 16 hex digits."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
