"""What each kind must satisfy beyond its own fields: uniqueness, references, deletes.

Small functions, one concern each, called by the service inside the change's
transaction (so a refusal rolls everything back):

- ``clusters_of(obj)``: the clusters whose Spec a change to ``obj`` can change (the
  ones a change locks and re-applies);
- ``check_<kind>(session, obj, changed)``: after the fields are set, before the
  Spec is resolved (Conflict or Invalid);
- ``check_delete(session, obj)``: Conflict when something still depends on it, and
  what deleting it implies for its siblings (a new default certificate).
- ``certificate_material``: a certificate, key and passphrase checked with lbcore's
  TLS loader, its host names derived; a key inside the chain is split off so the
  chain column never holds a private key.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lbcore.control.errors import Conflict, Invalid
from lbcore.control.model import (
    Acl,
    Cluster,
    Entity,
    Healthmonitor,
    Instance,
    Listener,
    Loadbalancer,
    Member,
    Pool,
    TlsCertificate,
)
from lbcore.control.resolve import live
from lbcore.tls.certs import Certificate, parse_certificate
from lbcore.tls.errors import TlsError

__all__ = ["certificate_material", "check", "check_delete", "clusters_of", "parent_relation"]

_KEY_BLOCK = re.compile(
    r"-----BEGIN ((?:RSA |EC |ENCRYPTED )?PRIVATE KEY)-----\r?\n.*?-----END \1-----\r?\n?", re.S)
HTTP_ONLY_MONITOR_FIELDS = ("path", "method", "expected_codes", "host")


def parent_relation(obj: Entity) -> str | None:
    """The relationship attribute of ``obj``'s parent (``cluster_id`` -> ``cluster``)."""
    return obj.PARENT[0][: -len("_id")] if obj.PARENT else None


def clusters_of(obj: Entity) -> set[str]:
    """Ids of the clusters a change to ``obj`` lands on (a pool: every cluster with a
    listener bound to it; none while it is bound nowhere)."""
    if isinstance(obj, Cluster):
        return {obj.id}
    if isinstance(obj, (Loadbalancer, Instance)):
        return {obj.cluster.id}
    if isinstance(obj, Listener):
        return {obj.instance.cluster.id}
    if isinstance(obj, (TlsCertificate, Acl)):
        return {obj.listener.instance.cluster.id}
    if isinstance(obj, Pool):
        return {acl.listener.instance.cluster.id for acl in obj.acls}
    if isinstance(obj, (Member, Healthmonitor)):
        return clusters_of(obj.pool)
    raise TypeError(f"not an entity: {type(obj).__name__}")


# -- per kind ---------------------------------------------------------------------------------------


def _others(session: Session, model: type[Entity], obj: Entity, *conditions: Any) -> int:
    statement = select(func.count()).select_from(model).where(model.id != obj.id, *conditions)
    return session.execute(statement).scalar_one()


def check_instance(session: Session, obj: Instance, changed: set[str], creating: bool) -> None:
    if "address" in changed and _others(session, Instance, obj, Instance.cluster_id == obj.cluster_id,
                                        Instance.address == obj.address):
        raise Conflict(f"address {obj.address} is already an instance of cluster {obj.cluster_id}")


def check_listener(session: Session, obj: Listener, changed: set[str], creating: bool) -> None:
    if "port" in changed and _others(session, Listener, obj, Listener.instance_id == obj.instance_id,
                                     Listener.port == obj.port):
        raise Conflict(f"port {obj.port} of instance {obj.instance_id} already has a listener")


def check_member(session: Session, obj: Member, changed: set[str], creating: bool) -> None:
    if changed & {"address", "port"} and _others(session, Member, obj, Member.pool_id == obj.pool_id,
                                                 Member.address == obj.address, Member.port == obj.port):
        raise Conflict(f"pool {obj.pool_id} already has a member at {obj.address} port {obj.port}")
    if obj.monitor_address is not None and obj.monitor_port is None and obj.monitor_address == obj.address:
        raise Invalid([("monitor_address", "is the member's own address: set monitor_port, or leave both null")])


def check_healthmonitor(session: Session, obj: Healthmonitor, changed: set[str], creating: bool) -> None:
    if "pool_id" in changed and _others(session, Healthmonitor, obj, Healthmonitor.pool_id == obj.pool_id):
        raise Conflict(f"pool {obj.pool_id} already has a health monitor")
    if obj.type not in ("HTTP", "HTTPS"):
        errors = [(key, f"only HTTP and HTTPS monitors take {key} (this one is {obj.type})")
                  for key in HTTP_ONLY_MONITOR_FIELDS if getattr(obj, key) is not None]
        if errors:
            raise Invalid(errors)


def check_acl(session: Session, obj: Acl, changed: set[str], creating: bool) -> None:
    if obj.pool.tenant_id != obj.tenant_id:
        raise Invalid([("pool_id", "the pool must belong to the listener's tenant")])
    if obj.condition is None and changed & {"condition", "listener_id"}:
        default = session.execute(
            select(Acl.id).where(Acl.listener_id == obj.listener_id, Acl.id != obj.id, Acl.condition.is_(None))
        ).scalars().first()
        if default is not None:
            raise Conflict(f"listener {obj.listener_id} already has a default acl ({default}): give this one a condition")
    if obj.position is None:
        highest = session.execute(
            select(func.max(Acl.position)).where(Acl.listener_id == obj.listener_id, Acl.id != obj.id)
        ).scalar()
        obj.position = 0 if highest is None else highest + 1


def check_tls_certificate(session: Session, obj: TlsCertificate, changed: set[str], creating: bool) -> None:
    listener = obj.listener
    if listener.protocol != "HTTPS":
        raise Invalid([("listener_id", f"certificates go on HTTPS listeners (this one is {listener.protocol})")])
    siblings = [cert for cert in listener.certificates if cert is not obj and live(cert)]
    if creating and not obj.is_default and not any(cert.is_default for cert in siblings):
        obj.is_default = True  # the first certificate of a listener is its default
    elif not creating and "is_default" in changed and not obj.is_default:
        raise Invalid([("is_default", "a listener has one default certificate: make another one the default")])
    if obj.is_default:
        for cert in siblings:
            if cert.is_default:
                cert.is_default = False


_CHECKS: dict[type[Entity], Callable[..., None]] = {
    Instance: check_instance,
    Listener: check_listener,
    Member: check_member,
    Healthmonitor: check_healthmonitor,
    Acl: check_acl,
    TlsCertificate: check_tls_certificate,
}


def check(session: Session, obj: Entity, changed: set[str], creating: bool) -> None:
    """Run ``obj``'s kind rule (``changed``: the fields whose value this change sets)."""
    rule = _CHECKS.get(type(obj))
    if rule is not None:
        rule(session, obj, changed, creating)


def check_delete(session: Session, obj: Entity) -> None:
    """Conflict when ``obj`` cannot go yet; else adjust what its going implies."""
    if isinstance(obj, Cluster) and obj.instances:
        raise Conflict(f"cluster {obj.id} still has {len(obj.instances)} instance(s): delete them first")
    if isinstance(obj, Instance) and obj.listeners:
        raise Conflict(f"instance {obj.id} still has {len(obj.listeners)} listener(s): delete them first")
    if isinstance(obj, Pool) and obj.acls:
        listeners = sorted({acl.listener_id for acl in obj.acls})
        raise Conflict(f"pool {obj.id} is still bound to listener(s) {', '.join(listeners)}: delete the acls first")
    if isinstance(obj, TlsCertificate) and obj.is_default:
        others = [cert for cert in obj.listener.certificates if cert is not obj and live(cert)]
        if others:
            min(others, key=lambda cert: (cert.created_at, cert.id)).is_default = True


# -- certificates -----------------------------------------------------------------------------------


def _field_of(message: str) -> str:
    lowered = message.lower()
    if "passphrase" in lowered or "decrypt" in lowered:
        return "passphrase"
    if "key" in lowered:
        return "private_key"
    return "certificate"


def certificate_material(chain: str, key: str | None, passphrase: str | None) -> tuple[Certificate, str, str, str | None]:
    """Check a certificate with its key. Returns (parsed certificate, the chain to
    store (leaf first, no key), the key to seal, the passphrase to seal (None unless
    the key is encrypted)). Invalid names the field at fault; messages never quote
    key material (``lbcore.tls.errors``)."""
    if key is None:
        blocks = [match.group(0) for match in _KEY_BLOCK.finditer(chain)]
        if len(blocks) != 1:
            found = "no private key" if not blocks else f"{len(blocks)} private keys"
            raise Invalid([("private_key", f"required: {found} in the certificate")])
        key = blocks[0]
    try:
        parsed, _warnings = parse_certificate(chain, key, passphrase)
    except TlsError as exc:
        raise Invalid([(_field_of(issue.message), issue.message) for issue in exc.issues]) from None
    encrypted = "ENCRYPTED" in key
    return parsed, parsed.chain_pem.decode("ascii"), key, passphrase if encrypted else None
