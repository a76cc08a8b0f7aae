"""Member state the supervisor owns: health results, runtime overrides, the snapshot.

Config and runtime never drift apart silently. A member's effective admin state and
weight are the Spec's values unless an operator changed them at runtime (runtime
socket: ``set server P/M state|weight``); such an override is *state*, kept across
a reload of the same Spec, and shown as such by ``show servers state``. When a new
revision changes that very field of that member, the operator changed the config
on purpose: the config wins and the override is dropped.

Health is the HealthMonitor's (active checks, passive ejection); members of pools
without a monitor are up unless ejected.

Every change produces the full table of member states, which the supervisor sends
to all workers (it is small: a few fields per member).
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

from lbcore import __version__
from lbcore import spec as S
from lbcore.proxy.stats import Aggregate, latency_dict, operating_status, responses_dict

__all__ = ["MemberBook", "ADMIN_ALIASES"]

ADMIN_ALIASES = {"ready": "enabled", "enabled": "enabled", "drain": "drain", "maint": "maint"}


class MemberBook:
    """Overrides + health, composed into worker member states and the stats snapshot."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self.on_change = on_change
        self.spec: S.Spec | None = None
        self.overrides: dict[tuple[str, str], dict[str, Any]] = {}
        self.health = None  # the HealthMonitor, set by the supervisor
        self.started = time.time()
        # When a member last came back UP (a real DOWN -> UP transition): slow start
        # ramps from there. Members up since the engine started, or new in a
        # revision, take full weight at once (as haproxy's slowstart).
        self.came_up: dict[tuple[str, str], float] = {}

    # -- spec ---------------------------------------------------------------------------
    def apply(self, spec: S.Spec) -> None:
        """A new revision: drop overrides of members gone or of fields the config changed."""
        old = self.spec
        self.spec = spec
        members = {(p.name, m.name): m for p in spec.pools for m in p.members}
        old_members = {(p.name, m.name): m for p in old.pools for m in p.members} if old else {}
        for key in list(self.came_up):
            if key not in members:
                del self.came_up[key]
        for key in list(self.overrides):
            member = members.get(key)
            if member is None:
                del self.overrides[key]
                continue
            before = old_members.get(key)
            override = self.overrides[key]
            if before is not None:
                if before.admin_state != member.admin_state:
                    override.pop("admin", None)
                if before.weight != member.weight:
                    override.pop("weight", None)
            if not override:
                del self.overrides[key]

    def _member(self, pool: str, member: str) -> S.Member:
        assert self.spec is not None
        try:
            return self.spec.pool(pool).member(member)
        except KeyError:
            raise KeyError(f"no member {pool}/{member}") from None

    # -- runtime changes (the runtime socket's Controller) -------------------------------
    def set_member_admin(self, pool: str, member: str, state: str) -> None:
        configured = self._member(pool, member)
        value = ADMIN_ALIASES.get(state)
        if value is None:
            raise ValueError(f"unknown state {state!r}: expected ready, drain or maint")
        self._override(pool, member, "admin", None if value == configured.admin_state else value)

    def set_member_weight(self, pool: str, member: str, weight: int | str) -> None:
        configured = self._member(pool, member)
        text = str(weight).strip()
        try:
            if text.endswith("%"):
                value = round(configured.weight * int(text[:-1]) / 100)
            else:
                value = int(text)
        except ValueError:
            raise ValueError(f"bad weight {text!r}: expected 0..256 or N%") from None
        if not 0 <= value <= 256:
            raise ValueError(f"weight {value} out of range 0..256")
        self._override(pool, member, "weight", None if value == configured.weight else value)

    def set_health_enabled(self, pool: str, member: str, enabled: bool) -> None:
        self._member(pool, member)
        if self.health is not None:
            self.health.set_enabled(pool, member, enabled)
        self._override(pool, member, "health_disabled", None if enabled else True)

    def _override(self, pool: str, member: str, field: str, value: Any) -> None:
        key = (pool, member)
        override = self.overrides.setdefault(key, {})
        if value is None:
            override.pop(field, None)
        else:
            override[field] = value
        if not override:
            del self.overrides[key]
        self.on_change()

    def health_changed(self, pool: str, member: str, up: bool) -> None:
        if up:
            self.came_up[(pool, member)] = time.time()
        else:
            self.came_up.pop((pool, member), None)
        self.on_change()

    # -- what workers get -----------------------------------------------------------------
    def _health(self, pool: str, member: str):
        return self.health.states().get((pool, member)) if self.health is not None else None

    def worker_states(self) -> dict[str, dict[str, Any]]:
        assert self.spec is not None
        out: dict[str, dict[str, Any]] = {}
        for pool in self.spec.pools:
            for member in pool.members:
                override = self.overrides.get((pool.name, member.name), {})
                health = self._health(pool.name, member.name)
                out[f"{pool.name}/{member.name}"] = {
                    "up": health.up if health is not None else True,
                    "since": self.came_up.get((pool.name, member.name)),
                    "admin": override.get("admin"),
                    "weight": override.get("weight"),
                }
        return out

    # -- what operators see ----------------------------------------------------------------
    def servers_state(self) -> list[dict[str, Any]]:
        assert self.spec is not None
        rows = []
        for pool in self.spec.pools:
            for member in pool.members:
                override = self.overrides.get((pool.name, member.name), {})
                health = self._health(pool.name, member.name)
                rows.append(
                    {
                        "pool": pool.name,
                        "member": member.name,
                        "address": str(member.address),
                        "admin": override.get("admin", member.admin_state),
                        "weight": override.get("weight", member.weight),
                        "configured_admin": member.admin_state,
                        "configured_weight": member.weight,
                        "health_enabled": not override.get("health_disabled", False),
                        "status": self._status(pool, member, override, health),
                        "source": "runtime" if override else "spec",
                        "overrides": sorted(override),
                    }
                )
        return rows

    @staticmethod
    def _status(pool: S.Pool, member: S.Member, override: dict, health) -> str:
        admin = override.get("admin", member.admin_state)
        if admin == "maint":
            return "MAINT"
        if health is not None and not health.up:
            return "DOWN"
        if admin == "drain":
            return "DRAIN"
        if health is None or not getattr(health, "enabled", True) or pool.health is None:
            return "NO_CHECK"
        return "UP"

    def snapshot(self, aggregate: Aggregate, workers: int) -> dict[str, Any]:
        assert self.spec is not None
        spec = self.spec
        pools = []
        pool_status: dict[str, str] = {}
        for pool in spec.pools:
            members = []
            up = 0
            for member in pool.members:
                override = self.overrides.get((pool.name, member.name), {})
                health = self._health(pool.name, member.name)
                status = self._status(pool, member, override, health)
                if status in ("UP", "NO_CHECK", "DRAIN"):
                    up += 1
                row = aggregate.member_row(pool.name, member.name)
                check = None
                if health is not None and pool.health is not None:
                    last = health.last
                    check = {
                        "enabled": bool(getattr(health, "enabled", True)),
                        "code": last.code if last else None,
                        "status": last.status if last else None,
                        "duration_ms": round(last.duration * 1000, 3) if last else None,
                        "detail": last.detail if last else "",
                        "at": last.at if last else None,
                        "rise": pool.health.rise,
                        "fall": pool.health.fall,
                    }
                members.append(
                    {
                        "name": member.name,
                        "address": str(member.address),
                        "weight": override.get("weight", member.weight),
                        "effective_weight": override.get("weight", member.weight) if status in ("UP", "NO_CHECK") else 0,
                        "backup": member.backup,
                        "admin": override.get("admin", member.admin_state),
                        "status": status,
                        "operating_status": operating_status(status, pool.health is not None),
                        "check": check,
                        "active": aggregate.active(f"{pool.name}/{member.name}"),
                        "conns_total": row.get("conns_total", 0),
                        "requests": row.get("requests", 0),
                        "responses": responses_dict(row["responses"]),
                        "connect_errors": row.get("connect_errors", 0),
                        "response_errors": row.get("response_errors", 0),
                        "bytes_in": row.get("bytes_in", 0),
                        "bytes_out": row.get("bytes_out", 0),
                        "latency": latency_dict(row),
                    }
                )
            if not pool.members:
                status = "OFFLINE"
            elif up == 0:
                status = "ERROR"
            elif up < len(pool.members) - sum(1 for m in members if m["status"] == "MAINT"):
                status = "DEGRADED"
            elif pool.health is None:
                status = "NO_MONITOR"
            else:
                status = "ONLINE"
            pool_status[pool.name] = status
            row = aggregate.pool_row(pool.name)
            pools.append(
                {
                    "name": pool.name,
                    "algorithm": pool.algorithm + (f"({pool.hash_header})" if pool.hash_header else ""),
                    "status": status,
                    "requests": row.get("requests", 0),
                    "responses": responses_dict(row["responses"]),
                    "connect_errors": row.get("connect_errors", 0),
                    "response_errors": row.get("response_errors", 0),
                    "retries": row.get("retries", 0),
                    "redispatches": row.get("redispatches", 0),
                    "queued": row.get("queued", 0),
                    "queue_timeouts": row.get("queue_timeouts", 0),
                    "no_member": row.get("no_member", 0),
                    "active": sum(m["active"] for m in members),
                    "members": members,
                }
            )
        listeners = []
        for listener in spec.listeners:
            row = aggregate.listener_row(listener.name)
            default = pool_status.get(listener.default_pool or "", "ONLINE")
            listeners.append(
                {
                    "name": listener.name,
                    "protocol": listener.protocol,
                    "bind": str(listener.bind),
                    "status": "OPEN",
                    "operating_status": "DEGRADED" if default in ("ERROR", "DEGRADED") else "ONLINE",
                    "conns_cur": aggregate.conns_cur(listener.name),
                    "conns_max": aggregate.conns_max.get(listener.name, 0),
                    "conns_total": row.get("conns_total", 0),
                    "requests": row.get("requests", 0),
                    "responses": responses_dict(row["responses"]),
                    "bytes_in": row.get("bytes_in", 0),
                    "bytes_out": row.get("bytes_out", 0),
                    "denied": row.get("denied", 0),
                    "errors": row.get("errors", 0),
                    "tls": {"full": row.get("tls_full", 0), "resumed": row.get("tls_resumed", 0), "failed": row.get("tls_failed", 0)},
                    "workers": aggregate.worker_rows(listener.name, workers),
                }
            )
        return {
            "info": {
                "version": __version__,
                "pid": os.getpid(),
                "uptime_s": round(time.time() - self.started, 3),
                "started_at": self.started,
                "revision": spec.revision,
                "workers": workers,
            },
            "listeners": listeners,
            "pools": pools,
        }
