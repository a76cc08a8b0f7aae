"""The status tree of a cluster and the operating-status roll-up that feeds it.

``refresh_operating(session, cluster_ids, pool_ids)`` recomputes the operating status
of everything on those clusters (and of those pools, bound or not) from members'
admin states and reported health, the listeners the Spec serves and the nodes'
provisioning (``lbcore.control.status`` holds the rules), writing only what changed
and never bumping a version. ``status_tree`` reads it back as Octavia's
``GET .../status`` does: cluster -> loadbalancers, instances -> listeners ->
(certificates, acls) and pools -> health monitor, members.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Callable, Iterable

from sqlalchemy import update
from sqlalchemy.orm import Session

from lbcore.control import status as st
from lbcore.control.model import Cluster, Entity, Listener, Pool
from lbcore.control.resolve import live, resolve

__all__ = ["refresh_operating", "status_tree"]


def _set(session: Session, obj: Entity, value: str) -> None:
    if obj.operating_status != value:
        session.execute(update(type(obj)).where(type(obj).id == obj.id).values(operating_status=value))


def _pool_status(session: Session, pool: Pool, serving: bool) -> str:
    monitor = pool.healthmonitor if live(pool.healthmonitor) else None
    if monitor is not None:
        _set(session, monitor, st.ERROR if monitor.provisioning_status == st.ERROR else st.ONLINE if serving else st.OFFLINE)
    states = []
    for member in [m for m in pool.members if live(m)]:
        state = st.member_status(member.admin_state, monitor is not None, member.health, member.provisioning_status)
        _set(session, member, state)
        states.append(state)
    value = st.roll_up(states) if serving else st.OFFLINE
    _set(session, pool, value)
    return value


def refresh_operating(session: Session, cluster_ids: Iterable[str], pool_ids: Iterable[str] = ()) -> None:
    """Recompute and store operating statuses under ``cluster_ids`` and of ``pool_ids``."""
    now = dt.datetime.now(dt.timezone.utc)
    done: set[str] = set()
    serving_pools: set[str] = set()
    for cluster_id in sorted(set(cluster_ids)):
        cluster = session.get(Cluster, cluster_id)
        if cluster is None:
            continue
        rendered = resolve(session, cluster_id).listeners
        instance_states = []
        for instance in [i for i in cluster.instances if live(i)]:
            listener_states = []
            for listener in [l for l in instance.listeners if live(l)]:
                serving = listener.id in rendered
                pool_states = []
                for acl in [a for a in listener.acls if live(a) and live(a.pool)]:
                    _set(session, acl, st.ONLINE if serving else st.OFFLINE)
                    if serving:
                        serving_pools.add(acl.pool.id)
                    if acl.pool.id not in done:
                        done.add(acl.pool.id)
                        pool_states.append(_pool_status(session, acl.pool, serving=True))
                    else:
                        pool_states.append(acl.pool.operating_status)
                for cert in [c for c in listener.certificates if live(c)]:
                    expired = cert.not_after is not None and cert.not_after < now
                    _set(session, cert, st.ERROR if expired else st.ONLINE if serving else st.OFFLINE)
                value = st.roll_up(pool_states, empty=st.ONLINE) if serving else st.OFFLINE
                _set(session, listener, value)
                listener_states.append(value)
            value = st.roll_up(listener_states)
            _set(session, instance, value)
            instance_states.append(value)
        node_states = []
        for node in [n for n in cluster.loadbalancers if live(n)]:
            value = {st.ACTIVE: st.ONLINE, st.ERROR: st.ERROR}.get(node.provisioning_status, st.OFFLINE)
            _set(session, node, value)
            node_states.append(value)
        value = st.roll_up(instance_states)
        if not node_states:
            value = st.OFFLINE
        elif st.ERROR in node_states and value != st.OFFLINE:
            value = st.ERROR if all(state == st.ERROR for state in node_states) else st.DEGRADED
        _set(session, cluster, value)
    for pool_id in pool_ids:
        pool = session.get(Pool, pool_id)
        if pool is not None and pool_id not in done:
            serving = any(live(acl) for acl in pool.acls)
            _pool_status(session, pool, serving=serving)


def _entry(obj: Entity, *extra: str) -> dict[str, Any]:
    out = {"id": obj.id, "name": obj.name, "provisioning_status": obj.provisioning_status,
           "operating_status": obj.operating_status}
    for key in extra:
        out[key] = getattr(obj, key)
    return out


def status_tree(cluster: Cluster, visible: Callable[[Entity], bool], show_nodes: bool) -> dict[str, Any]:
    """Octavia's status tree for ``cluster``, keeping only what ``visible`` allows."""
    instances = []
    for instance in [i for i in cluster.instances if visible(i)]:
        listeners = []
        for listener in instance.listeners:
            listeners.append(_listener(listener))
        instances.append({**_entry(instance, "address"), "listeners": listeners})
    out: dict[str, Any] = {**_entry(cluster, "cluster_model", "revision"), "instances": instances}
    if show_nodes:
        out["loadbalancers"] = [_entry(node, "driver", "role", "management_address", "revision", "last_error")
                                for node in cluster.loadbalancers]
    return {"cluster": out}


def _listener(listener: Listener) -> dict[str, Any]:
    pools: list[dict[str, Any]] = []
    seen: set[str] = set()
    for acl in listener.acls:
        if acl.pool.id in seen:
            continue
        seen.add(acl.pool.id)
        pool = acl.pool
        monitor = pool.healthmonitor
        pools.append({
            **_entry(pool),
            "healthmonitor": _entry(monitor, "type") if monitor is not None else None,
            "members": [_entry(member, "address", "port", "admin_state") for member in pool.members],
        })
    return {
        **_entry(listener, "port", "protocol"),
        "tls_certificates": [_entry(cert, "is_default", "hostnames") for cert in listener.certificates],
        "acls": [_entry(acl, "position", "pool_id") for acl in listener.acls],
        "pools": pools,
    }
