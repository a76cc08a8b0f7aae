"""Cascading attributes: a setting made on a less specific object applies to everything
below it that does not set it; the most specific setting wins.

Theory of operation. Each attribute (``ATTRS``) names the levels it may be set on,
least specific first, and each level stores it either in the object's ``attrs``
mapping or in one of its own fields (``Attr.fields``: a pool's ``algorithm``, a
member's ``weight``, a health monitor's ``interval``...). A *chain* is the path from
a cluster down to one object, as ``(kind, object)`` pairs; ``resolve`` walks it from
the most specific end and takes the first level that sets the attribute, else the
built-in default (the Spec's own defaults, so the two cannot drift apart).

Two sides, as in the Spec (and haproxy's frontend/backend split):

- frontend, per listener: cluster -> instance -> listener
  (client, http_request and keepalive timeouts, maxconn, listen backlog, shards,
  forwarded headers, HTTP limits);
- backend, per pool: cluster -> pool -> member or health monitor
  (connect, server and tunnel timeouts, balance algorithm, slow start, per-member
  connection limit, health-check interval/timeout/rise/fall, member weight).

A pool belongs to a tenant, not a cluster, and may serve listeners of several
clusters: its cluster level is the cluster being resolved, so one pool can resolve
to different values in different clusters. A pool's values never come from a
listener (one pool serves many listeners: the Spec has one value per pool).

Pure: no database, no I/O; objects are read by attribute (``attrs`` and fields).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping, Sequence

from lbcore.control import schema as s
from lbcore.spec import SHARDS, Defaults, HealthCheck, Limits, Listener, Member, Pool, Timeouts

__all__ = ["ATTRS", "Attr", "attrs_check", "attrs_for", "effective", "resolve", "resolved_values", "DEFAULT_SOURCE"]

FRONTEND = ("cluster", "instance", "listener")
BACKEND = ("cluster", "pool")
DEFAULT_SOURCE = {"kind": "default", "id": None, "name": None}


@dataclass(frozen=True)
class Attr:
    """One cascading attribute: its validator, built-in default, levels (least
    specific first) and, per level kind, the object field that holds it (absent:
    ``attrs[name]``)."""

    name: str
    check: Callable[[Any], Any]
    default: Any
    levels: tuple[str, ...]
    fields: Mapping[str, str] = field(default_factory=dict)
    description: str = ""

    @property
    def side(self) -> str:
        return "frontend" if "listener" in self.levels else "backend"


_T, _L, _H, _P, _M, _D = Timeouts(), Limits(), HealthCheck(type="tcp"), Pool(name="p"), Member(name="m", address="127.0.0.1:1"), Defaults()
_LISTENER_DEFAULTS = {f.name: f.default for f in fields(Listener)}  # a Listener needs a name and bind to exist


def _attr(name: str, check: Callable[[Any], Any], default: Any, levels: tuple[str, ...], description: str,
          **fields: str) -> Attr:
    return Attr(name, check, default, levels, fields, description)


ATTRS: dict[str, Attr] = {a.name: a for a in (
    # frontend: per listener
    _attr("timeout_client", s.duration, _T.client, FRONTEND, "client idle while a request or response is in flight"),
    _attr("timeout_http_request", s.duration, _T.http_request, FRONTEND, "whole request head from the client"),
    _attr("timeout_keepalive", s.duration, _T.keepalive, FRONTEND, "idle client connection between requests"),
    _attr("maxconn", s.integer(1, 10_000_000), _D.maxconn, FRONTEND, "concurrent client connections per listener"),
    _attr("backlog", s.integer(1, 65535), _LISTENER_DEFAULTS["backlog"], FRONTEND,
          "connections the kernel queues for the listener before a worker accepts them (listen backlog)"),
    _attr("shards", s.choice(*SHARDS), _LISTENER_DEFAULTS["shards"], FRONTEND,
          "shared: one listening socket every worker accepts from; per-worker: one SO_REUSEPORT socket per "
          "worker (changing it on a running multi-worker engine needs a restart)"),
    _attr("forwarded_headers", s.forwarded_headers, list(_D.forwarded_headers), FRONTEND,
          "forwarding headers added to requests (http and https listeners)"),
    _attr("max_request_line", s.size, _L.max_request_line, FRONTEND, "bytes of a request line"),
    _attr("max_header_bytes", s.size, _L.max_header_bytes, FRONTEND, "bytes of a request head"),
    _attr("max_headers", s.integer(1, 10000), _L.max_headers, FRONTEND, "header lines in a request head"),
    _attr("max_body", s.size, _L.max_body, FRONTEND, "bytes of a request body (default: unlimited)"),
    # backend: per pool
    _attr("timeout_connect", s.duration, _T.connect, BACKEND, "TCP connect to a member"),
    _attr("timeout_server", s.duration, _T.server, BACKEND, "member idle while a response is awaited"),
    _attr("timeout_tunnel", s.duration, _T.tunnel, BACKEND, "idle upgraded connection or tcp tunnel"),
    _attr("algorithm", s.algorithm, _P.algorithm_text, BACKEND, "balance algorithm", pool="algorithm"),
    _attr("slow_start", s.duration_or_zero, _P.slow_start, BACKEND, "weight ramp-up of a member coming back (0: off)"),
    _attr("member_maxconn", s.integer(0, 1_000_000), _P.max_connections_per_member, BACKEND,
          "concurrent connections to one member (0: no limit)"),
    _attr("health_interval", s.duration, _H.interval, BACKEND + ("healthmonitor",), "time between checks",
          healthmonitor="interval"),
    _attr("health_timeout", s.duration, _H.timeout, BACKEND + ("healthmonitor",), "time a check may take",
          healthmonitor="timeout"),
    _attr("health_rise", s.integer(1, 100), _H.rise, BACKEND + ("healthmonitor",), "passes in a row to go up",
          healthmonitor="rise"),
    _attr("health_fall", s.integer(1, 100), _H.fall, BACKEND + ("healthmonitor",), "failures in a row to go down",
          healthmonitor="fall"),
    _attr("weight", s.integer(0, 256), _M.weight, BACKEND + ("member",), "member weight (haproxy's default-server weight)",
          member="weight"),
)}


def attrs_for(kind: str) -> list[Attr]:
    """The attributes an object of ``kind`` takes part in (may set or inherit)."""
    return [attr for attr in ATTRS.values() if kind in attr.levels]


def attrs_check(kind: str) -> Callable[[Any], dict[str, Any]]:
    """The validator of ``kind``'s ``attrs`` field: only attributes stored in attrs at
    that level; values canonical; a null value means "unset" (JSON merge patch)."""

    def check(value: Any) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise ValueError("expected a mapping of attribute name to value")
        out: dict[str, Any] = {}
        problems: list[str] = []
        for name, raw in value.items():
            attr = ATTRS.get(name) if isinstance(name, str) else None
            if attr is None:
                problems.append(f"{name}: unknown attribute{s.did_you_mean(str(name), ATTRS)}")
                continue
            if kind not in attr.levels:
                where = " or ".join(level for level in attr.levels if level not in attr.fields)
                problems.append(f"{name}: a {attr.side} attribute, set on a {where}, not a {kind}")
                continue
            if kind in attr.fields:
                problems.append(f"{name}: set the {kind}'s own {attr.fields[kind]} field")
                continue
            if raw is None:
                out[name] = None
                continue
            try:
                out[name] = attr.check(raw)
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
        if problems:
            raise ValueError("; ".join(problems))
        return out

    return check


def level_value(attr: Attr, kind: str, obj: Any) -> tuple[bool, Any]:
    """(whether ``obj`` of ``kind`` sets ``attr``, the value)."""
    if kind not in attr.levels or obj is None:
        return False, None
    field_name = attr.fields.get(kind)
    if field_name is not None:
        value = getattr(obj, field_name, None)
        return value is not None, value
    attrs = getattr(obj, "attrs", None) or {}
    return attr.name in attrs and attrs[attr.name] is not None, attrs.get(attr.name)


def source_of(kind: str, obj: Any) -> dict[str, Any]:
    return {"kind": kind, "id": getattr(obj, "id", None), "name": getattr(obj, "name", None)}


def resolve(attr: Attr, chain: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    """``{"value": v, "source": {"kind", "id", "name"}}``: the most specific level of
    ``chain`` (least specific first) that sets ``attr``, else the default."""
    for kind, obj in reversed(chain):
        is_set, value = level_value(attr, kind, obj)
        if is_set:
            return {"value": value, "source": source_of(kind, obj)}
    return {"value": attr.default, "source": dict(DEFAULT_SOURCE)}


def effective(chain: Sequence[tuple[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every attribute the last object of ``chain`` takes part in, resolved; a
    cluster shows all of them."""
    kind = chain[-1][0]
    return {attr.name: resolve(attr, chain) for attr in attrs_for(kind)}


def resolved_values(chain: Sequence[tuple[str, Any]], names: Sequence[str] | None = None) -> dict[str, Any]:
    """Just the values, for the resolver."""
    wanted = names if names is not None else [attr.name for attr in attrs_for(chain[-1][0])]
    return {name: resolve(ATTRS[name], chain)["value"] for name in wanted}
