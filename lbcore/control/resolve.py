"""From the model to a Spec: one cluster -> the plain dict ``lbcore.spec.parse_spec`` reads.

Theory of operation. ``resolve(session, cluster_id)`` walks the cluster's live
objects (everything but PENDING_DELETE) and writes what each engine of the cluster
runs, every cascading value already resolved onto the listener or pool that uses it
(``lbcore.control.cascade``):

- a listener per routable listener: bind = instance address + port (``[v6]:port``);
  its acls with a condition, in position order; its default pool: the pool of its
  acl without a condition, else the first pool bound (the 2014 model's rule). A
  listener is routable once it has an acl or a redirect, and for HTTPS a
  certificate: until then it is left out (its operating status says OFFLINE), so
  the natural order of work (listener, then certificates, pools, acls) never
  produces a Spec the engine would refuse.
- a pool per pool that a rendered listener routes to, with its members and, from
  its health monitor, its health check.
- certificates as files: ``certs/<name>-<id8>-<digest>.pem`` and ``.key``, paths
  relative to the Spec's directory; the digest changes when the certificate or key
  does, so a new key is a new file and a visible Spec change.

Spec names are ``<name>-<first 8 of the id>`` (names are free text and two tenants'
pools may share a name on a shared cluster). ``validate`` runs ``parse_spec`` and
turns its errors into ``Invalid`` with paths by Spec name
(``listeners[web-1a2b3c4d].acls[api-5e6f7a8b].condition``).

``resolve`` needs no secrets (dry runs and diffs); ``load_files`` decrypts the keys
for an apply, and ``render_cluster`` writes one directory per cluster revision
(``<out>/<cluster id>/<revision>/``: ``spec.json`` and ``certs/``, files 0600, so
``lbcore serve <dir>/spec.json`` runs it as is).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from sqlalchemy.orm import Session

from lbcore.control.cascade import ATTRS, resolve as resolve_attr
from lbcore.control.errors import Invalid, NotFound
from lbcore.control.model import Acl, Cluster, Entity, Listener, Pool, TlsCertificate
from lbcore.control.secrets import Secrets
from lbcore.control.status import PENDING_DELETE
from lbcore.spec import Spec, SpecError, parse_spec

__all__ = [
    "Resolution",
    "cluster_files",
    "live",
    "load_files",
    "render_cluster",
    "resolve",
    "resolve_cluster",
    "spec_name",
    "validate",
]

_SLUG_BAD = re.compile(r"[^A-Za-z0-9_.-]+")
_HTTP = ("HTTP", "HTTPS")
_FRONTEND_TIMEOUTS = ("client", "http_request", "keepalive")
_BACKEND_TIMEOUTS = ("connect", "server", "tunnel")
_LIMITS = ("max_request_line", "max_header_bytes", "max_headers", "max_body")


def live(obj: Entity | None) -> bool:
    """Whether an object takes part in the Spec (it exists and is not being deleted)."""
    return obj is not None and obj.provisioning_status != PENDING_DELETE


def spec_name(obj: Entity) -> str:
    """``<name>-<id8>``: the name made Spec-safe (or the kind, when empty) and the id's start."""
    slug = _SLUG_BAD.sub("-", obj.name or "").strip("-._")[:54] or obj.KIND.replace("_", "-")
    return f"{slug}-{obj.id[:8]}"


def bind_address(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


@dataclass
class Resolution:
    """A cluster resolved: ``spec`` (parse_spec input), ``certificates`` (relative
    path -> (certificate id, "chain" | "key")), ``listeners`` (rendered listener ids),
    and what turns positional Spec paths into named ones."""

    cluster_id: str
    spec: dict[str, Any]
    certificates: dict[str, tuple[str, str]] = field(default_factory=dict)
    listeners: set[str] = field(default_factory=set)
    names: dict[str, Any] = field(default_factory=dict)

    def named_path(self, path: str) -> str:
        """``listeners[0].acls[2].condition`` -> ``listeners[web-1a2b3c4d].acls[api-5e6f7a8b].condition``."""
        out: list[str] = []
        scope: Any = self.names
        for part in path.split("."):
            match = re.fullmatch(r"([A-Za-z_]+)\[(\d+)\](.*)", part)
            if match is None or not isinstance(scope, dict) or match.group(1) not in scope:
                out.append(part)
                scope = None
                continue
            entries = scope[match.group(1)]
            index = int(match.group(2))
            if index >= len(entries):
                out.append(part)
                scope = None
                continue
            name, children = entries[index]
            out.append(f"{match.group(1)}[{name}]{match.group(3)}")
            scope = children
        return ".".join(out)


def _chain(*levels: tuple[str, Any]) -> list[tuple[str, Any]]:
    return [level for level in levels if level[1] is not None]


def _value(name: str, chain: list[tuple[str, Any]]) -> Any:
    return resolve_attr(ATTRS[name], chain)["value"]


def _default_acl(acls: list[Acl]) -> Acl | None:
    """The acl whose pool is the listener's default: the first without a condition,
    else the first bound (oldest)."""
    if not acls:
        return None
    plain = [acl for acl in acls if acl.condition is None]
    if plain:
        return plain[0]
    return min(acls, key=lambda acl: (acl.created_at, acl.id))


def certificate_digest(cert: TlsCertificate) -> str:
    """Changes whenever the chain, the key or the passphrase does (ciphertext, no secret)."""
    h = hashlib.sha256()
    for part in (cert.certificate, cert.private_key, cert.passphrase or ""):
        h.update(part.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:12]


def resolve(session: Session, cluster_id: str) -> Resolution:
    """The cluster's Spec input, without reading any secret. NotFound if absent."""
    cluster = session.get(Cluster, cluster_id)
    if cluster is None:
        raise NotFound("cluster", cluster_id)
    top = [("cluster", cluster)]
    result = Resolution(cluster_id, {})
    listeners: list[dict[str, Any]] = []
    listener_names: list[tuple[str, Any]] = []
    pools: dict[str, Pool] = {}
    for instance in [i for i in cluster.instances if live(i)]:
        for listener in [l for l in instance.listeners if live(l)]:
            entry = _listener(result, listener, [*top, ("instance", instance), ("listener", listener)], pools)
            if entry is None:
                continue
            data, names = entry
            listeners.append(data)
            listener_names.append((data["name"], names))
            result.listeners.add(listener.id)
    pool_entries = []
    pool_names: list[tuple[str, Any]] = []
    for pool in sorted(pools.values(), key=lambda p: (p.created_at, p.id)):
        data = _pool(pool, [*top, ("pool", pool)])
        pool_entries.append(data)
        pool_names.append((data["name"], {"members": [(m["name"], None) for m in data["members"]]}))
    result.spec = {
        "version": 1,
        "defaults": _defaults(top),
        "listeners": listeners,
        "pools": pool_entries,
    }
    result.names = {"listeners": listener_names, "pools": pool_names}
    return result


def _defaults(chain: list[tuple[str, Any]]) -> dict[str, Any]:
    return {
        "timeouts": {key: _value(f"timeout_{key}", chain) for key in _FRONTEND_TIMEOUTS + _BACKEND_TIMEOUTS},
        "limits": {key: _value(key, chain) for key in _LIMITS},
        "forwarded_headers": list(_value("forwarded_headers", chain)),
        "maxconn": _value("maxconn", chain),
    }


def _listener(result: Resolution, listener: Listener, chain: list[tuple[str, Any]],
              pools: dict[str, Pool]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    acls = [acl for acl in listener.acls if live(acl) and live(acl.pool)]
    acls.sort(key=lambda acl: (acl.position, acl.created_at, acl.id))
    certificates = [cert for cert in listener.certificates if live(cert)] if listener.protocol == "HTTPS" else []
    if not acls and listener.redirect is None:
        return None
    if listener.protocol == "HTTPS" and not certificates:
        return None
    routed = [acl for acl in acls if acl.condition is not None]
    default = _default_acl(acls)
    for acl in acls:
        pools[acl.pool.id] = acl.pool
    data: dict[str, Any] = {
        "name": spec_name(listener),
        "bind": bind_address(listener.instance.address, listener.port),
        "protocol": listener.protocol.lower(),
        "acls": [{"name": spec_name(acl), "condition": acl.condition, "pool": spec_name(acl.pool)} for acl in routed],
        "timeouts": {key: _value(f"timeout_{key}", chain) for key in _FRONTEND_TIMEOUTS},
        "limits": {key: _value(key, chain) for key in _LIMITS},
        "maxconn": _value("maxconn", chain),
        "backlog": _value("backlog", chain),
        "shards": _value("shards", chain),
    }
    if default is not None:
        data["default_pool"] = spec_name(default.pool)
    if listener.protocol in _HTTP:
        data["forwarded_headers"] = list(_value("forwarded_headers", chain))
    else:
        data["forwarded_headers"] = []
    if listener.add_headers:
        data["add_headers"] = dict(listener.add_headers)
    if listener.redirect is not None:
        data["redirect"] = dict(listener.redirect)
    names: dict[str, Any] = {"acls": [(spec_name(acl), None) for acl in routed]}
    if certificates:
        defaults = [cert for cert in certificates if cert.is_default]
        chosen = defaults[0] if defaults else certificates[0]
        entries, cert_names = [], []
        for cert in certificates:
            base = f"certs/{spec_name(cert)}-{certificate_digest(cert)}"
            result.certificates[f"{base}.pem"] = (cert.id, "chain")
            result.certificates[f"{base}.key"] = (cert.id, "key")
            entries.append({"cert": f"{base}.pem", "key": f"{base}.key", "default": cert is chosen})
            cert_names.append((spec_name(cert), None))
        data["tls"] = {"certificates": entries}
        names["tls"] = {"certificates": cert_names}
    return data, names


def _pool(pool: Pool, chain: list[tuple[str, Any]]) -> dict[str, Any]:
    monitor = pool.healthmonitor if live(pool.healthmonitor) else None
    data: dict[str, Any] = {
        "name": spec_name(pool),
        "algorithm": _value("algorithm", chain),
        "persistence": dict(pool.persistence) if pool.persistence else None,
        "outlier": dict(pool.outlier) if pool.outlier else None,
        "slow_start": _value("slow_start", chain),
        "timeouts": {key: _value(f"timeout_{key}", chain) for key in _BACKEND_TIMEOUTS},
        "max_connections_per_member": _value("member_maxconn", chain),
        "members": [],
    }
    if monitor is not None:
        check_chain = [*chain, ("healthmonitor", monitor)]
        health: dict[str, Any] = {
            "type": monitor.type.lower(),
            "interval": _value("health_interval", check_chain),
            "timeout": _value("health_timeout", check_chain),
            "rise": _value("health_rise", check_chain),
            "fall": _value("health_fall", check_chain),
        }
        for key, spec_key in (("path", "path"), ("method", "method"), ("expected_codes", "expect"), ("host", "host")):
            value = getattr(monitor, key)
            if value is not None:
                health[spec_key] = value
        data["health"] = health
    for member in [m for m in pool.members if live(m)]:
        entry: dict[str, Any] = {
            "name": spec_name(member),
            "address": bind_address(member.address, member.port),
            "weight": _value("weight", [*chain, ("member", member)]),
            "backup": member.backup,
            "admin_state": member.admin_state,
        }
        if member.monitor_address is not None:
            entry["monitor_address"] = bind_address(member.monitor_address, member.monitor_port or member.port)
        elif member.monitor_port is not None:
            entry["monitor_port"] = member.monitor_port
        data["members"].append(entry)
    return data


def validate(resolution: Resolution) -> Spec:
    """The Spec, or Invalid listing every problem by named Spec path."""
    try:
        return parse_spec(resolution.spec)
    except SpecError as exc:
        raise Invalid([(resolution.named_path(issue.path), issue.message) for issue in exc.errors]) from None


def load_files(session: Session, resolution: Resolution, secrets: Secrets) -> dict[str, bytes]:
    """The certificate and key files the Spec names: chains as stored, keys decrypted
    (and unencrypted PKCS#8 when they came with a passphrase: the files are 0600 on
    the node, and the passphrase then need not travel)."""
    files: dict[str, bytes] = {}
    for path, (cert_id, part) in sorted(resolution.certificates.items()):
        cert = session.get(TlsCertificate, cert_id)
        if cert is None:
            raise NotFound("tls_certificate", cert_id)
        if part == "chain":
            files[path] = cert.certificate.encode("ascii")
        else:
            files[path] = private_key_pem(cert, secrets)
    return files


def private_key_pem(cert: TlsCertificate, secrets: Secrets) -> bytes:
    key = secrets.open(cert.private_key, f"tls_certificates.private_key:{cert.id}")
    if cert.passphrase is None:
        return key
    passphrase = secrets.open(cert.passphrase, f"tls_certificates.passphrase:{cert.id}")
    loaded = serialization.load_pem_private_key(key, passphrase)
    return loaded.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())


def resolve_cluster(session: Session, cluster_id: str) -> tuple[dict[str, Any], Spec]:
    """The in-memory variant (dry runs, diffs): the Spec dict and the validated Spec; no file
    is read or written and no secret is opened. Invalid if the model resolves to a bad Spec."""
    resolution = resolve(session, cluster_id)
    return resolution.spec, validate(resolution)


def cluster_files(session: Session, cluster_id: str, secrets: Secrets) -> tuple[Spec, dict[str, bytes]]:
    """The validated Spec and the files it names (what an applier pushes to the nodes)."""
    resolution = resolve(session, cluster_id)
    spec = validate(resolution)
    return spec, load_files(session, resolution, secrets)


def render_cluster(session: Session, cluster_id: str, secrets: Secrets,
                   out_dir: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Resolve, validate and write ``<out_dir>/<cluster_id>/<revision>/`` (``spec.json``
    and the certificate files, 0600; directories 0700). Returns (spec dict, files by
    relative path). A revision already written is left as it is."""
    resolution = resolve(session, cluster_id)
    spec = validate(resolution)
    files = load_files(session, resolution, secrets)
    target = Path(out_dir) / cluster_id / spec.revision
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        staging = Path(tempfile.mkdtemp(prefix=f".{spec.revision}-", dir=target.parent))
        try:
            for relative, content in {**files, "spec.json": _spec_json(resolution.spec)}.items():
                path = staging / relative
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(content)
            os.rename(staging, target)
        except OSError:
            if not target.exists():
                raise
            # another writer got there first with the same revision: same content
        finally:
            if staging.exists():
                _remove_tree(staging)
    return resolution.spec, files


def _spec_json(spec: dict[str, Any]) -> bytes:
    return (json.dumps(spec, indent=2, sort_keys=True) + "\n").encode("utf-8")


def _remove_tree(path: Path) -> None:
    for child in sorted(path.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        child.rmdir() if child.is_dir() else child.unlink()
    path.rmdir()
