"""Reading a Spec from plain data (what YAML or JSON gave): keys, nesting, cascading.

Theory of operation: one ``read_*`` function per object of the file. Each takes the raw
value and its path, reads the keys it knows (an unknown key is a problem, with a
did-you-mean), fills what the file leaves out from the level below in the cascade,
then hands the values to ``check_object`` (the same checks a dataclass runs on
creation). It returns the built object when nothing under it was wrong, else a
``Partial`` whose good fields later checks can still read. Problems are collected,
never raised, until ``parse_spec`` has read everything.

Cascade: built-in defaults -> ``defaults:`` -> each listener (client, http_request,
keepalive, drain timeouts; limits; forwarded_headers; maxconn; access_log, key by key;
tls: every key but certificates, see ``_tls``),
and built-in defaults -> ``defaults:`` -> each pool (connect, server, tunnel timeouts).
A pool's values never come from a listener: one pool may serve many listeners.
"""

from __future__ import annotations

import re
from dataclasses import MISSING, fields, replace
from typing import Any, Callable, Iterable, Mapping

from lbcore.l7.acl import parse_condition
from lbcore.spec import _checks as v
from lbcore.spec._accesslog import SYSLOG_ONLY_KEYS, AccessLogSettings, parse_log_target
from lbcore.spec._admin import AdminSettings
from lbcore.spec._checks import FAILED, Partial, check_object, ok
from lbcore.spec._errors import SpecError, SpecIssue, join_path
from lbcore.spec._tls import POLICY_KEYS, ClientAuth, Hsts, PoolTls, TlsPolicy
from lbcore.spec._model import (
    DEFAULT_FORWARDED,
    DEFAULT_MAXCONN,
    HTTP_CHECK_KEYS,
    Acl,
    Defaults,
    HealthCheck,
    Limits,
    Listener,
    Member,
    Outlier,
    Persistence,
    Pool,
    Redirect,
    Spec,
    Timeouts,
    TlsCertificate,
    TlsSettings,
    check_version,
)
from lbcore.spec._values import Invalid, describe, did_you_mean

__all__ = ["parse_spec"]

L4_PROTOCOLS = ("tcp", "tls-passthrough")
_ALGORITHM_RE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_-]*)\s*(?:\(\s*([^()]*?)\s*\))?\s*\Z")
# Per field: what a wrong key at that level should say instead of "unknown key".
_TIMEOUT_ELSEWHERE = {
    "listener": "is a backend timeout: set it in defaults or on a pool",
    "pool": "is a frontend timeout: set it in defaults or on a listener",
}

Reader = Callable[[Any, str, dict[str, Any]], None]


class _Reader:
    """Collects problems while the file is read."""

    def __init__(self) -> None:
        self.issues: list[SpecIssue] = []

    def add(self, path: str, message: str) -> None:
        issue = SpecIssue(path, message)
        if issue not in self.issues:
            self.issues.append(issue)

    def mapping(self, raw: Any, path: str, allowed: Iterable[str]) -> dict[str, Any] | None:
        """The keys of ``raw`` that this level knows; an issue for each it does not."""
        if not isinstance(raw, Mapping):
            self.add(path, f"expected a mapping, got {describe(raw)}")
            return None
        allowed = tuple(allowed)
        known: dict[str, Any] = {}
        for key, value in raw.items():
            if not isinstance(key, str):
                self.add(path, f"keys must be strings, got {describe(key)}")
            elif key not in allowed:
                self.add(join_path(path, key), f"unknown key{did_you_mean(key, allowed)}")
            else:
                known[key] = value
        return known

    def build(
        self,
        cls: type,
        raw: Any,
        path: str,
        *,
        required: tuple[str, ...] = (),
        readers: Mapping[str, Reader] | None = None,
        base: Mapping[str, Any] | None = None,
        hidden: tuple[str, ...] = (),
    ) -> Any:
        """Read one object: keys -> values (``readers`` for nested or special keys, the
        raw value otherwise) over ``base`` and the class defaults, then check."""
        start = len(self.issues)
        readers = readers or {}
        data = self.mapping(raw, path, [key for key in cls._FIELDS if key not in hidden])
        if data is None:
            return Partial(cls, {})
        values = _class_defaults(cls)
        values.update(base or {})
        for key in required:
            if key not in data:
                self.add(join_path(path, key), "required key missing")
                values[key] = FAILED
        for key, raw_value in data.items():
            if key in readers:
                readers[key](raw_value, join_path(path, key), values)
            else:
                values[key] = raw_value
        for rel, message in check_object(cls, values):
            self.add(join_path(path, rel), message)
        if len(self.issues) > start:
            return Partial(cls, values)
        try:
            return cls(**values)
        except SpecError as exc:  # the same checks ran above; kept as a safety net
            for issue in exc.errors:
                self.add(join_path(path, issue.path), issue.message)
            return Partial(cls, values)

    def items(self, raw: Any, path: str, read_item: Callable[[Any, str], Any]) -> Any:
        """A list of objects; null is an empty list."""
        if raw is None:
            return ()
        if not isinstance(raw, list):
            self.add(path, f"expected a list, got {describe(raw)}")
            return FAILED
        return tuple(read_item(item, f"{path}[{index}]") for index, item in enumerate(raw))


def _class_defaults(cls: type) -> dict[str, Any]:
    values = {}
    for field in fields(cls):
        if field.name in cls._FIELDS:  # type: ignore[attr-defined]
            values[field.name] = field.default if field.default is not MISSING else FAILED
    return values


def _set(key: str, read: Callable[[Any, str], Any], *, nullable: bool = True) -> Reader:
    """A reader storing ``read(raw, path)`` in ``values[key]``; null stores None."""

    def reader(raw: Any, path: str, values: dict[str, Any]) -> None:
        values[key] = None if raw is None and nullable else read(raw, path)

    return reader


# -- cascading sections ------------------------------------------------------------------------


def _overrides(r: _Reader, cls: type, raw: Any, path: str, base: Any, level: str | None = None) -> Any:
    """``base`` (Timeouts or Limits) with the values ``raw`` sets; ``level`` (listener,
    pool) limits which timeouts may be set there."""
    if raw is None:
        return base
    data = r.mapping(raw, path, cls._FIELDS)  # type: ignore[attr-defined]
    if data is None:
        return FAILED
    allowed = {"listener": Timeouts.LISTENER_KEYS, "pool": Timeouts.POOL_KEYS}.get(level or "")
    changes, failed = {}, False
    for key, value in data.items():
        if allowed is not None and key not in allowed:
            r.add(join_path(path, key), f"{key} {_TIMEOUT_ELSEWHERE[level or '']}")
            failed = True
            continue
        try:
            changes[key] = cls._FIELDS[key](value)  # type: ignore[attr-defined]
        except Invalid as exc:
            r.add(join_path(path, key + exc.sub), exc.message)
            failed = True
    return FAILED if failed else replace(base, **changes)


def _usable(value: Any, fallback: Any) -> Any:
    return value if ok(value) else fallback


# -- objects ------------------------------------------------------------------------------------


def read_defaults(r: _Reader, raw: Any, path: str) -> Any:
    if raw is None:
        return Defaults()
    return r.build(
        Defaults,
        raw,
        path,
        readers={
            "timeouts": _set("timeouts", lambda raw, p: _overrides(r, Timeouts, raw, p, Timeouts()), nullable=False),
            "limits": _set("limits", lambda raw, p: _overrides(r, Limits, raw, p, Limits()), nullable=False),
            "access_log": _set("access_log", lambda raw, p: read_access_log(r, raw, p)),
            "tls": _set("tls", lambda raw, p: read_tls_policy(r, raw, p), nullable=False),
        },
    )


def read_acl(r: _Reader, raw: Any, path: str) -> Any:
    def condition(raw: Any, path: str, values: dict[str, Any]) -> None:
        values["source"] = raw
        if not isinstance(raw, (str, Mapping, list)):
            r.add(path, f"expected a condition (a string or a mapping), got {describe(raw)}")
            values["condition"] = values["source"] = FAILED
            return
        try:
            values["condition"] = parse_condition(raw)
        except (ValueError, TypeError) as exc:
            r.add(path, str(exc))
            values["condition"] = FAILED

    return r.build(Acl, raw, path, required=("name", "condition", "pool"), readers={"condition": condition}, hidden=("source",))


def read_redirect(r: _Reader, raw: Any, path: str) -> Any:
    return r.build(Redirect, raw, path)


def _tls_blocks(r: _Reader) -> dict[str, Reader]:
    """Readers of the blocks inside a TLS policy."""
    return {
        "hsts": _set("hsts", lambda raw, p: r.build(Hsts, raw, p)),
        "client_auth": _set("client_auth", lambda raw, p: r.build(ClientAuth, raw, p, required=("mode",))),
    }


def read_tls_policy(r: _Reader, raw: Any, path: str) -> Any:
    """``defaults.tls``: the policy https listeners inherit (no certificates)."""
    if raw is None:
        return TlsPolicy()
    return r.build(TlsPolicy, raw, path, readers=_tls_blocks(r))


def read_tls(r: _Reader, raw: Any, path: str, base: Any = None) -> Any:
    """A listener's ``tls``, key by key over ``base`` (``defaults.tls``; None or a
    Partial: the built-in policy). Turning session tickets off drops an inherited
    ticket key file, which would have no use."""
    inherited: dict[str, Any] = {}
    if isinstance(base, TlsPolicy):
        inherited = {key: getattr(base, key) for key in POLICY_KEYS}
        if isinstance(raw, Mapping) and raw.get("session_tickets") is False and "ticket_keys" not in raw:
            inherited["ticket_keys"] = None

    def certificates(raw: Any, path: str, values: dict[str, Any]) -> None:
        values["certificates"] = r.items(raw, path, lambda item, p: r.build(TlsCertificate, item, p, required=("cert",)))

    return r.build(
        TlsSettings, raw, path, required=("certificates",), base=inherited,
        readers={"certificates": certificates, **_tls_blocks(r)},
    )


def read_access_log(r: _Reader, raw: Any, path: str, base: Any = None, *, listener: bool = False) -> Any:
    """An ``access_log`` mapping, key by key over ``base`` (a listener's: the log of
    defaults, which a listener that writes the section turns on unless it says
    ``enabled: false``). ``base`` FAILED: defaults were wrong, already reported."""
    inherited: dict[str, Any] = {}
    if isinstance(base, AccessLogSettings):
        inherited = {key: getattr(base, key) for key in AccessLogSettings._FIELDS}
    if listener:
        inherited["enabled"] = True
    settings = r.build(AccessLogSettings, raw, path, base=inherited)
    target = getattr(settings, "target", FAILED)
    judged = isinstance(raw, Mapping) and (base is not FAILED or "target" in raw)  # not a target defaults got wrong
    if judged and target is not FAILED and not parse_log_target(target).is_syslog:
        for key in SYSLOG_ONLY_KEYS:
            if key in raw and getattr(settings, key) is not FAILED:  # a bad value: reported once
                r.add(join_path(path, key), f"only syslog targets take {key} (this one is {parse_log_target(target).kind})")
    return settings


def read_listener(r: _Reader, raw: Any, path: str, defaults: Any) -> Any:
    base_timeouts = _usable(getattr(defaults, "timeouts", FAILED), Timeouts())
    base_limits = _usable(getattr(defaults, "limits", FAILED), Limits())
    forwarded = getattr(defaults, "forwarded_headers", FAILED)
    maxconn = getattr(defaults, "maxconn", FAILED)
    access_log = getattr(defaults, "access_log", FAILED)
    access_log = access_log if ok(access_log) else FAILED  # a Partial: reported, not inherited
    protocol = raw.get("protocol", "http") if isinstance(raw, Mapping) else None

    def forwarded_headers(raw: Any, path: str, values: dict[str, Any]) -> None:
        values["forwarded_headers"] = () if raw is None else raw
        if protocol in L4_PROTOCOLS and raw:
            r.add(path, f"only http and https listeners add forwarding headers (this one is {protocol})")

    def headers(key: str) -> Reader:
        def reader(raw: Any, path: str, values: dict[str, Any]) -> None:
            values[key] = () if raw is None else raw

        return reader

    return r.build(
        Listener,
        raw,
        path,
        required=("name", "bind"),
        base={
            "timeouts": base_timeouts,
            "limits": base_limits,
            "forwarded_headers": _usable(forwarded, DEFAULT_FORWARDED),
            "maxconn": _usable(maxconn, DEFAULT_MAXCONN),
            "access_log": _usable(access_log, None),
        },
        readers={
            "acls": _set("acls", lambda raw, p: r.items(raw, p, lambda a, q: read_acl(r, a, q)), nullable=False),
            "timeouts": _set("timeouts", lambda raw, p: _overrides(r, Timeouts, raw, p, base_timeouts, "listener"), nullable=False),
            "limits": _set("limits", lambda raw, p: _overrides(r, Limits, raw, p, base_limits), nullable=False),
            "forwarded_headers": forwarded_headers,
            "add_headers": headers("add_headers"),
            "response_headers": headers("response_headers"),
            "redirect": _set("redirect", lambda raw, p: read_redirect(r, raw, p)),
            "tls": _set("tls", lambda raw, p: read_tls(r, raw, p, getattr(defaults, "tls", None))),
            "access_log": _set("access_log", lambda raw, p: read_access_log(r, raw, p, access_log, listener=True)),
        },
    )


def read_health(r: _Reader, raw: Any, path: str) -> Any:
    check = r.build(HealthCheck, raw, path, required=("type",))
    if isinstance(raw, Mapping) and raw.get("type") in ("tcp", "tls-hello"):
        for key in HTTP_CHECK_KEYS:
            if key in raw:
                r.add(join_path(path, key), f"only http and https checks take {key} (this one is {raw['type']})")
    return check


def read_member(r: _Reader, raw: Any, path: str) -> Any:
    return r.build(Member, raw, path, required=("name", "address"))


def read_pool(r: _Reader, raw: Any, path: str, defaults: Any) -> Any:
    base_timeouts = _usable(getattr(defaults, "timeouts", FAILED), Timeouts())

    def algorithm(raw: Any, path: str, values: dict[str, Any]) -> None:
        if not isinstance(raw, str):
            values["algorithm"] = raw  # the field check says what is wrong with it
            return
        match = _ALGORITHM_RE.match(raw)
        if match is None:
            r.add(path, f"invalid algorithm {raw!r} (roundrobin, leastconn, source, uri, hdr(NAME) or random)")
            values["algorithm"] = FAILED
            return
        name, argument = match.groups()
        values["algorithm"] = name
        if not argument:  # hdr() says as little as hdr
            return
        if name != "hdr":
            r.add(path, f"{name} takes no argument")
            values["algorithm"] = FAILED
            return
        try:
            values["hash_header"] = v.header_name(argument).lower()
        except Invalid as exc:
            r.add(path, exc.message)
            values["hash_header"] = FAILED

    return r.build(
        Pool,
        raw,
        path,
        required=("name",),
        base={"timeouts": base_timeouts},
        hidden=("hash_header",),
        readers={
            "algorithm": algorithm,
            "persistence": _set("persistence", lambda raw, p: r.build(Persistence, raw, p, required=("type",))),
            "health": _set("health", lambda raw, p: read_health(r, raw, p)),
            "outlier": _set("outlier", lambda raw, p: r.build(Outlier, raw, p)),
            "tls": _set("tls", lambda raw, p: r.build(PoolTls, raw, p)),
            "members": _set("members", lambda raw, p: r.items(raw, p, lambda m, q: read_member(r, m, q)), nullable=False),
            "timeouts": _set("timeouts", lambda raw, p: _overrides(r, Timeouts, raw, p, base_timeouts, "pool"), nullable=False),
        },
    )


def parse_spec(data: Mapping[str, Any]) -> Spec:
    """A Spec from plain data; SpecError lists every problem found, with its path."""
    r = _Reader()
    if data is None:
        raise SpecError([SpecIssue("", "the spec is empty")])
    if not isinstance(data, Mapping):
        raise SpecError([SpecIssue("", f"a spec is a mapping (version, defaults, listeners, pools), got {describe(data)}")])
    top = r.mapping(data, "", Spec._FIELDS)
    assert top is not None
    version = top.get("version", 1)
    try:
        version = check_version(version)
    except Invalid as exc:
        r.add("version", exc.message)
        version = FAILED
    defaults = read_defaults(r, top.get("defaults"), "defaults")
    listeners = r.items(top.get("listeners"), "listeners", lambda raw, p: read_listener(r, raw, p, defaults))
    pools = r.items(top.get("pools"), "pools", lambda raw, p: read_pool(r, raw, p, defaults))
    admin = AdminSettings() if top.get("admin") is None else r.build(AdminSettings, top["admin"], "admin")
    values = {
        "version": version,
        "defaults": defaults,
        "listeners": listeners,
        "pools": pools,
        "admin": admin,
    }
    for rel, message in check_object(Spec, values):
        r.add(rel, message)
    if r.issues:
        raise SpecError(r.issues)
    return Spec(**values)
