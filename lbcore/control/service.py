"""The control plane's service layer: the one contract the REST API and the CLI code against.

    store = Store("/var/lib/lbcore/control.db"); store.migrate()
    service = ControlService(store, Secrets.load("/etc/lbcore/control.key", create=True), applier)
    admin = service.authenticate(token)                       # Principal | None
    result = service.create(admin, "pool", {"name": "www"})   # ChangeResult(obj, etag, diffs)

Every method takes plain dicts and returns plain JSON-able dicts; refusals are the
exceptions of ``lbcore.control.errors`` (each with its HTTP status).

Tenancy
-------
Every object has a ``tenant_id``. A caller (``Principal``) sees and changes only its
tenant's objects: another tenant's object is NotFound, never Forbidden, so ids do not
leak. An admin sees and changes everything, and may create objects for any tenant
(``tenant_id`` in the data). A child is always its parent's tenant's (an admin
adding a member to tenant B's pool makes B's member), with one exception:

Shared clusters (``shared: true``, set by an admin only) are visible to every
tenant, and any tenant may create *instances* on them; the instance is the
tenant's, and so are the listeners, certificates and acls under it (bound to the
tenant's own pools). Only the cluster's owner (or an admin) may change or delete the
cluster, add or see its loadbalancers (nodes), or see other tenants' instances;
a tenant's status tree of a shared cluster shows its own instances only. The
cluster's cascading attributes apply to every tenant's listeners on it.

Changes
-------
create, update and delete (and legacy_vip, reapply) run one pipeline:

1. In one transaction: check the input and the rules; test-and-set every affected
   cluster (the clusters whose Spec the change can change) from ACTIVE/ERROR to
   PENDING_UPDATE, else 409; set the object PENDING_CREATE/UPDATE/DELETE; resolve
   and validate each affected cluster's new Spec (a bad one: Invalid, nothing is
   changed); compute the Spec diff per cluster. ``dry_run`` stops here and rolls
   back, returning the diffs. Otherwise commit.
2. ``applier.apply(cluster_id, spec, files, nodes)`` for each affected cluster with
   its live nodes (loadbalancers); no applier or no node: nothing to push.
3. In a second transaction: every node that failed is ERROR (with ``last_error``),
   the others ACTIVE at the new revision; the changed objects and the cluster are
   ACTIVE, or ERROR if any node of the change failed; a PENDING_DELETE that
   applied is removed. ERROR is retried by an update (``{}`` will do) or deleted.

A change that crashes between 1 and 3 leaves PENDING_* rows: ``recover()`` (run
when the service starts) turns those older than ``recover_after`` into ERROR.

Updates are partial: fields not sent keep their value; ``attrs`` merges key by key
and a null value removes a key (JSON merge patch). ``version`` counts configuration
changes; the ETag is ``"<version>"``; status transitions do not change it. Parent
ids and a few fields (a listener's protocol, a cluster's model) are fixed at create.

Deletes: a listener takes its acls and certificates along, a pool its members and
monitor, a cluster its loadbalancers. A cluster with instances, an instance with
listeners and a pool still bound by an acl are a Conflict (delete those first).

Nodes: a cluster's owner (a tenant on its own cluster, or an admin) adds
loadbalancers; a new node gets the current Spec at once, as every node of the
cluster does on every change. For drivers and node agents: ``cluster_spec``,
``cluster_payload`` (what an apply would push now), ``reapply`` (push again and
settle) and ``report_member_health`` (engines' health checks -> operating status).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import secrets as random_secrets
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from lbcore.control import rules
from lbcore.control import schema as s
from lbcore.control.cascade import attrs_for, resolve as resolve_attr
from lbcore.control.errors import Conflict, ControlError, Forbidden, Invalid, NotFound, PreconditionFailed
from lbcore.control.model import (
    KINDS,
    LISTENER_PROTOCOLS,
    MODELS,
    Acl,
    Cluster,
    Entity,
    Healthmonitor,
    Instance,
    Listener,
    Loadbalancer,
    Member,
    Pool,
    Tenant,
    TlsCertificate,
    Token,
    new_id,
    utcnow,
)
from lbcore.control.resolve import live, load_files, resolve, spec_name, validate
from lbcore.control.schema import Field, check_input
from lbcore.control.secrets import Secrets
from lbcore.control.status import (
    ACTIVE,
    DELETED,
    ERROR,
    OFFLINE,
    PENDING,
    PENDING_DELETE,
    PENDING_UPDATE,
    SETTLED,
    TransitionError,
    next_status,
)
from lbcore.control.store import Store
from lbcore.control.tree import refresh_operating, status_tree
from lbcore.spec import Spec, diff

__all__ = ["Applier", "ChangeResult", "ControlService", "Principal"]

log = logging.getLogger("lbcore.control")

TOKEN_PREFIX = "lbc"
MAX_LIMIT = 1000
_PENDING_OF = {"update": PENDING_UPDATE, "delete": PENDING_DELETE}


@dataclass(frozen=True)
class Principal:
    """Who calls: a tenant, and whether it is an admin."""

    tenant_id: str
    is_admin: bool = False


@dataclass(frozen=True)
class ChangeResult:
    """What a change did (or, with ``dry_run``, would do).

    ``obj``: the object as it is now (None after a delete); ``etag``: its ETag (None
    for a dry run or a delete); ``diffs``: cluster id -> the Spec changes
    (``lbcore.spec.Change.to_dict()``: path, kind, old, new); ``applied``: cluster
    id -> node id -> None (applied) or the node's error."""

    obj: dict[str, Any] | None
    etag: str | None
    diffs: dict[str, list[dict[str, Any]]]
    applied: dict[str, dict[str, str | None]] = field(default_factory=dict)
    dry_run: bool = False


class Applier(Protocol):
    """Pushes a cluster's Spec to its nodes (the native driver: node agents over mTLS).

    ``files``: path relative to the Spec's directory -> content (certificates and
    their keys; keys unencrypted, to be written 0600); ``nodes``: the cluster's live
    loadbalancers as dicts (id, management_address, driver, role, ...). Returns node
    id -> None (applied) or an error text (no secret in it); a node left out of the
    answer counts as failed."""

    def apply(self, cluster_id: str, spec: Spec, files: dict[str, bytes], nodes: list[dict[str, Any]]) -> dict[str, str | None]:
        ...


@dataclass
class _Outcome:
    """A committed (or dry-run) change, between its transaction and its apply."""

    clusters: list[str]
    touched: list[tuple[type[Entity], str]]
    pools: set[str]
    diffs: dict[str, list[dict[str, Any]]]
    payloads: dict[str, tuple[Spec, dict[str, bytes], list[dict[str, Any]]]]
    primary: tuple[type[Entity], str] | None
    obj: dict[str, Any] | None
    compose: Callable[[Session], dict[str, Any]] | None = None
    dry_run: bool = False


class _Change:
    """One change inside its transaction: the cluster locks, the touched objects, the Specs."""

    def __init__(self, service: "ControlService", session: Session, dry_run: bool) -> None:
        self.service = service
        self.session = session
        self.dry_run = dry_run
        self.old: dict[str, Spec] = {}
        self.new_clusters: set[str] = set()
        self.touched: list[Entity] = []
        self.pools: set[str] = set()

    def lock(self, cluster_ids: Sequence[str] | set[str], *, new: Sequence[str] = ()) -> None:
        """Test-and-set each cluster to PENDING_UPDATE (409 if it is mid-change),
        keeping the Spec it resolves to now, for the diff."""
        for cluster_id in sorted(set(cluster_ids) - set(self.old)):
            if cluster_id in new:
                self.old[cluster_id] = Spec()
                self.new_clusters.add(cluster_id)
                continue
            self.old[cluster_id] = self.service._current_spec(self.session, cluster_id)
            result = self.session.execute(
                update(Cluster)
                .where(Cluster.id == cluster_id, Cluster.provisioning_status.in_(SETTLED))
                .values(provisioning_status=PENDING_UPDATE)
            )
            if result.rowcount != 1:
                cluster = self.session.get(Cluster, cluster_id)
                state = cluster.provisioning_status if cluster is not None else "gone"
                raise Conflict(f"cluster {cluster_id} is {state}: another change is in progress, retry when it is "
                               f"ACTIVE or ERROR")

    def touch(self, obj: Entity, event: str) -> None:
        """Move ``obj`` to the PENDING_* of ``event`` (create, update, delete)."""
        if isinstance(obj, Cluster) and obj.id in self.old and obj.id not in self.new_clusters:
            status = _PENDING_OF[event]  # its lock already checked it was settled
        else:
            try:
                status = next_status(None if event == "create" else obj.provisioning_status, event)
            except TransitionError:
                raise Conflict(f"{obj.KIND} {obj.id} is {obj.provisioning_status}: a change is in progress") from None
        if event == "create":
            obj.provisioning_status = status
        else:
            self.session.execute(update(type(obj)).where(type(obj).id == obj.id).values(provisioning_status=status))
        self.touched.append(obj)
        if isinstance(obj, Pool):
            self.pools.add(obj.id)
        elif isinstance(obj, (Member, Healthmonitor)):
            self.pools.add(obj.pool_id)

    def finish(self, uow: Any, primary: Entity | None, compose: Callable[[Session], dict[str, Any]] | None = None) -> _Outcome:
        """Resolve and validate every affected cluster's Spec, diff it, keep what the
        apply needs; roll back for a dry run."""
        session = self.session
        session.flush()
        diffs: dict[str, list[dict[str, Any]]] = {}
        payloads: dict[str, tuple[Spec, dict[str, bytes], list[dict[str, Any]]]] = {}
        for cluster_id in sorted(self.old):
            resolution = resolve(session, cluster_id)
            try:
                spec = validate(resolution)
            except Invalid as exc:
                if len(self.old) == 1:
                    raise
                raise Invalid([(path, f"{message} (cluster {cluster_id})") for path, message in exc.errors]) from None
            diffs[cluster_id] = [change.to_dict() for change in diff(self.old[cluster_id], spec)]
            if not self.dry_run:
                session.execute(update(Cluster).where(Cluster.id == cluster_id).values(revision=spec.revision))
                cluster = session.get(Cluster, cluster_id)
                assert cluster is not None
                nodes = [node.to_dict() for node in cluster.loadbalancers if live(node)]
                files = load_files(session, resolution, self.service.secrets) if nodes else {}
                payloads[cluster_id] = (spec, files, nodes)
        obj = compose(session) if compose is not None else (primary.to_dict() if primary is not None else None)
        if self.dry_run:
            uow.rollback()
        return _Outcome(
            clusters=sorted(self.old),
            touched=[(type(item), item.id) for item in self.touched],
            pools=set(self.pools),
            diffs=diffs,
            payloads=payloads,
            primary=(type(primary), primary.id) if primary is not None and primary in self.touched else None,
            obj=obj,
            compose=compose,
            dry_run=self.dry_run,
        )


class ControlService:
    """The control plane's operations; see the module docstring for the rules."""

    KINDS = KINDS

    def __init__(self, store: Store, secrets: Secrets, applier: Applier | None = None, *,
                 recover_after: float | None = None, migrate: bool = True) -> None:
        """``recover_after``: seconds after which a PENDING_* object left by a crash is
        set to ERROR at start (None: 0 on SQLite, one control-plane process; 300 on
        PostgreSQL, where other processes may be mid-change). ``migrate``: bring the
        schema to head first (Alembic)."""
        self.store = store
        self.secrets = secrets
        self.applier = applier
        if migrate:
            store.migrate()
        if recover_after is None:
            recover_after = 0.0 if store.dialect == "sqlite" else 300.0
        self.recover(older_than=recover_after)

    # -- tenants and tokens -------------------------------------------------------------------------

    def create_tenant(self, name: str) -> dict[str, Any]:
        """A new tenant (``name`` unique). The REST layer lets only admins call it."""
        try:
            name = s.text()(name)
        except ValueError as exc:
            raise Invalid([("name", str(exc))]) from None
        if not name:
            raise Invalid([("name", "required")])
        with self._writing() as uow:
            if uow.session.execute(select(Tenant.id).where(Tenant.name == name)).first() is not None:
                raise Conflict(f"tenant {name!r} exists")
            tenant = uow.add(Tenant(id=new_id(), name=name))
            uow.flush()
            return tenant.to_dict()

    def list_tenants(self, principal: Principal) -> list[dict[str, Any]]:
        """Every tenant (admin only)."""
        if not principal.is_admin:
            raise Forbidden("only an admin may list tenants")
        with self.store.unit_of_work(readonly=True) as uow:
            return [tenant.to_dict() for tenant in uow.scalars(select(Tenant).order_by(Tenant.created_at, Tenant.id))]

    def create_token(self, tenant_id: str, *, admin: bool = False) -> str:
        """A bearer token for ``tenant_id`` (``admin``: an admin token). The plaintext is
        returned once; only its SHA-256 is stored."""
        secret = random_secrets.token_urlsafe(32)
        with self.store.unit_of_work() as uow:
            if uow.get(Tenant, tenant_id) is None:
                raise NotFound("tenant", tenant_id)
            token = uow.add(Token(id=new_id(), tenant_id=tenant_id, digest=_digest(secret), is_admin=admin))
            return f"{TOKEN_PREFIX}_{token.id}_{secret}"

    def authenticate(self, token: str) -> Principal | None:
        """The principal a bearer token stands for, or None (unknown, malformed, revoked)."""
        if not isinstance(token, str):
            return None
        prefix, _, rest = token.partition("_")
        token_id, _, secret = rest.partition("_")
        if prefix != TOKEN_PREFIX or not token_id or not secret or len(token) > 200:
            return None
        with self.store.unit_of_work(readonly=True) as uow:
            row = uow.get(Token, token_id)
            expected = row.digest if row is not None else _digest("")
            good = hmac.compare_digest(expected, _digest(secret))
            if row is None or not good:
                return None
            return Principal(row.tenant_id, row.is_admin)

    def revoke_token(self, principal: Principal, token_id: str) -> None:
        """Delete a token (an admin's, or one of the caller's own tenant)."""
        with self.store.unit_of_work() as uow:
            row = uow.get(Token, token_id)
            if row is None or not (principal.is_admin or row.tenant_id == principal.tenant_id):
                raise NotFound("token", token_id)
            uow.delete(row)

    # -- reading ------------------------------------------------------------------------------------

    def schema(self, kind: str) -> dict[str, Any]:
        """The wire schema of ``kind``: writable fields (type, required, mutable,
        nullable, default, choices, ref, write_only, admin_only) and read-only ones."""
        model = self._model(kind)
        return s.describe(model.all_fields(), model.read_only())

    def get(self, principal: Principal, kind: str, id: str) -> tuple[dict[str, Any], str]:
        """(object, ETag); NotFound for a missing or another tenant's object."""
        model = self._model(kind)
        with self.store.unit_of_work(readonly=True) as uow:
            obj = self._load(uow.session, principal, model, id)
            return obj.to_dict(), obj.etag

    def list(self, principal: Principal, kind: str, *, filters: Mapping[str, str] | None = None,
             sort: str | None = None, limit: int = 100, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """(objects, total matching). ``filters``: field -> value as text (equality;
        booleans true/false); ``sort``: ``field`` or ``-field``, comma-separated
        (default: created_at); ``limit`` 1..1000."""
        model = self._model(kind)
        errors: list[tuple[str, str]] = []
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            errors.append(("limit", f"must be 1..{MAX_LIMIT}"))
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            errors.append(("offset", "must be 0 or more"))
        columns = _scalar_columns(model)
        conditions = []
        for key, raw in (filters or {}).items():
            column = columns.get(key)
            if column is None:
                errors.append((f"filters.{key}", f"not a field to filter on{s.did_you_mean(key, columns)}"))
                continue
            try:
                conditions.append(column == _typed(column, raw))
            except ValueError as exc:
                errors.append((f"filters.{key}", str(exc)))
        order = []
        for part in (sort or "created_at").split(","):
            part = part.strip()
            key = part.lstrip("-")
            column = columns.get(key)
            if column is None:
                errors.append(("sort", f"cannot sort on {key!r}{s.did_you_mean(key, columns)}"))
                continue
            order.append(column.desc() if part.startswith("-") else column.asc())
        if errors:
            raise Invalid(errors)
        order.append(model.id.asc())
        with self.store.unit_of_work(readonly=True) as uow:
            scoped = self._scope(select(model), model, principal).where(*conditions)
            total = uow.session.execute(select(func.count()).select_from(scoped.subquery())).scalar_one()
            rows = uow.scalars(scoped.order_by(*order).limit(limit).offset(offset)).all()
            return [row.to_dict() for row in rows], total

    def effective(self, principal: Principal, kind: str, id: str, *, cluster_id: str | None = None) -> dict[str, Any]:
        """Each cascading attribute ``kind`` takes part in: ``{attr: {"value": v,
        "source": {"kind", "id", "name"}}}`` (kind "default" for a built-in). A pool
        (and its members and monitor) resolves against one cluster: ``cluster_id``, or
        the one cluster it serves; serving several, each entry also has
        ``per_cluster`` (cluster id -> value and source) and the top-level value is
        what a cluster that sets nothing gives."""
        model = self._model(kind)
        with self.store.unit_of_work(readonly=True) as uow:
            obj = self._load(uow.session, principal, model, id)
            chain = _chain_of(obj)
            attributes = attrs_for(obj.KIND)
            if not attributes:
                return {}
            if not isinstance(obj, (Pool, Member, Healthmonitor)):
                return {attr.name: resolve_attr(attr, chain) for attr in attributes}
            pool = obj if isinstance(obj, Pool) else obj.pool
            clusters = {acl.listener.instance.cluster for acl in pool.acls}
            if cluster_id is not None:
                chosen = [c for c in clusters if c.id == cluster_id]
                if not chosen:
                    raise Invalid([("cluster_id", f"pool {pool.id} serves no listener of cluster {cluster_id}")])
                clusters = set(chosen)
            if len(clusters) == 1:
                return {attr.name: resolve_attr(attr, [("cluster", next(iter(clusters))), *chain])
                        for attr in attributes}
            out = {attr.name: resolve_attr(attr, chain) for attr in attributes}
            if clusters:
                for attr in attributes:
                    out[attr.name]["per_cluster"] = {
                        cluster.id: resolve_attr(attr, [("cluster", cluster), *chain])
                        for cluster in sorted(clusters, key=lambda c: c.id)
                    }
            return out

    def status_tree(self, principal: Principal, cluster_id: str) -> dict[str, Any]:
        """Octavia's status tree: ``{"cluster": {..., "loadbalancers": [...],
        "instances": [{..., "listeners": [{..., "tls_certificates", "acls", "pools":
        [{..., "healthmonitor", "members"}]}]}]}}`` with provisioning and operating
        status at every level. A tenant on another's shared cluster sees its own
        instances and no loadbalancers."""
        with self.store.unit_of_work(readonly=True) as uow:
            cluster = self._load(uow.session, principal, Cluster, cluster_id)
            owner = principal.is_admin or cluster.tenant_id == principal.tenant_id
            return status_tree(cluster, lambda obj: principal.is_admin or obj.tenant_id == principal.tenant_id, owner)

    def cluster_spec(self, cluster_id: str) -> Spec:
        """The Spec the model resolves to now for ``cluster_id`` (no tenancy: for drivers)."""
        with self.store.unit_of_work(readonly=True) as uow:
            return validate(resolve(uow.session, cluster_id))

    def cluster_payload(self, cluster_id: str) -> tuple[Spec, dict[str, bytes], list[dict[str, Any]]]:
        """What ``Applier.apply`` gets for ``cluster_id`` now: (Spec, files, live nodes);
        for bringing a node that was away up to the current revision."""
        with self.store.unit_of_work(readonly=True) as uow:
            resolution = resolve(uow.session, cluster_id)
            spec = validate(resolution)
            cluster = uow.get(Cluster, cluster_id)
            assert cluster is not None
            nodes = [node.to_dict() for node in cluster.loadbalancers if live(node)]
            return spec, load_files(uow.session, resolution, self.secrets), nodes

    # -- changes ------------------------------------------------------------------------------------

    def create(self, principal: Principal, kind: str, data: Mapping[str, Any], *, dry_run: bool = False) -> ChangeResult:
        """Create an object of ``kind`` from ``data`` (fields: ``schema(kind)``)."""
        model = self._model(kind)
        with self._writing() as uow:
            session = uow.session
            values = self._input(principal, model, data, creating=True)
            given_tenant = values.pop("tenant_id")
            parent = self._parent_for_create(session, principal, model, values)
            tenant_id = self._owner_for_create(session, principal, model, parent, given_tenant)
            pool = self._pool_ref(session, principal, values["pool_id"], tenant_id) if model is Acl else None
            change = _Change(self, session, dry_run)
            obj_id = new_id()
            change.lock(_clusters_below(parent) if parent is not None else set(),
                        new=[obj_id] if model is Cluster else ())
            if model is TlsCertificate:
                values.update(self._certificate(obj_id, values, None))
            obj = model(id=obj_id, tenant_id=tenant_id, operating_status=OFFLINE, **values)
            if parent is not None:
                setattr(obj, rules.parent_relation(obj) or "", parent)
            if pool is not None:
                obj.pool = pool  # type: ignore[attr-defined]
            if model is Cluster:
                change.lock([obj_id], new=[obj_id])
            session.add(obj)
            self._check(session, obj, set(values), creating=True)
            change.touch(obj, "create")
            outcome = self._finish(change, uow, obj)
        return self._complete(outcome)

    def update(self, principal: Principal, kind: str, id: str, data: Mapping[str, Any], *,
               if_match: str | None = None, dry_run: bool = False) -> ChangeResult:
        """Change the fields ``data`` names (partial; ``{}`` retries an object in ERROR)."""
        model = self._model(kind)
        with self._writing() as uow:
            session = uow.session
            obj = self._load(session, principal, model, id)
            self._require_owner(principal, obj)
            _check_if_match(obj, if_match)
            values = self._input(principal, model, data, creating=False, current=obj.to_dict())
            values.pop("tenant_id", None)
            change = _Change(self, session, dry_run)
            change.lock(rules.clusters_of(obj))
            if if_match is not None:
                session.refresh(obj)  # another writer may have committed while we waited for the lock
                _check_if_match(obj, if_match)
            if "attrs" in values:
                merged = {**(obj.attrs or {}), **values["attrs"]}  # type: ignore[attr-defined]
                values["attrs"] = {key: value for key, value in merged.items() if value is not None}
            if model is TlsCertificate and {"certificate", "private_key", "passphrase"} & set(values):
                values.update(self._certificate(obj.id, values, obj))  # type: ignore[arg-type]
            if model is Acl and "pool_id" in values and values["pool_id"] != obj.pool_id:  # type: ignore[attr-defined]
                obj.pool = self._pool_ref(session, principal, values["pool_id"], obj.tenant_id)  # type: ignore[attr-defined]
            changed = {key for key, value in values.items() if getattr(obj, key) != value}
            for key in changed:
                setattr(obj, key, values[key])
            if isinstance(obj, Member) and changed & {"address", "port", "monitor_address", "monitor_port"}:
                obj.health = None  # what was reported was about another endpoint
            self._check(session, obj, changed, creating=False)
            change.touch(obj, "update")
            outcome = self._finish(change, uow, obj)
        return self._complete(outcome)

    def delete(self, principal: Principal, kind: str, id: str, *, if_match: str | None = None,
               dry_run: bool = False) -> ChangeResult:
        """Delete an object: a listener takes its acls and certificates along, a pool its
        members and monitor, a cluster its loadbalancers; a cluster with instances, an
        instance with listeners and a pool still bound are a Conflict."""
        model = self._model(kind)
        with self._writing() as uow:
            session = uow.session
            obj = self._load(session, principal, model, id)
            self._require_owner(principal, obj)
            _check_if_match(obj, if_match)
            change = _Change(self, session, dry_run)
            change.lock(rules.clusters_of(obj))
            if if_match is not None:
                session.refresh(obj)
                _check_if_match(obj, if_match)
            with session.no_autoflush:
                rules.check_delete(session, obj)
            change.touch(obj, "delete")
            outcome = self._finish(change, uow, None)
        return self._complete(outcome)

    def reapply(self, principal: Principal, cluster_id: str) -> ChangeResult:
        """Push the cluster's current Spec to every node again (after a node failed or
        came back); settles the cluster and its nodes as any change does."""
        with self._writing() as uow:
            cluster = self._load(uow.session, principal, Cluster, cluster_id)
            self._require_owner(principal, cluster)
            change = _Change(self, uow.session, False)
            change.lock([cluster_id])
            outcome = self._finish(change, uow, None)
            outcome.primary = (Cluster, cluster_id)
        return self._complete(outcome)

    def reconcile(self) -> list[str]:
        """Bring nodes that failed back to their cluster's current revision.

        A node that was down (or refused) when a change was pushed is left in ERROR;
        once it answers again, pushing the cluster's current Spec settles it (and the
        cluster) to ACTIVE. Called periodically by ``lbcore control serve``. Returns
        the ids of the clusters it re-pushed.
        """
        admin = Principal(tenant_id="", is_admin=True)
        nodes, _total = self.list(admin, "loadbalancer", filters={"provisioning_status": "ERROR"}, limit=1000)
        clusters = sorted({node["cluster_id"] for node in nodes})
        for cluster_id in clusters:
            try:
                self.reapply(admin, cluster_id)
            except ControlError:
                pass  # mid-change (409) or gone: the next round sees it again
        return clusters

    def legacy_vip(self, principal: Principal, data: Mapping[str, Any], *, dry_run: bool = False) -> ChangeResult:
        """The 2014 workflow's last step, for an existing pool (with its members and
        monitor): ``{pool_id, address, port, protocol}`` and optionally ``name``,
        ``cluster_id`` (else a visible cluster on ``network``, else a new single
        cluster), ``network``, ``loadbalancers`` ([{management_address, driver, role,
        name}] for a new cluster). ``protocol`` defaults to HTTP. Creates what is missing of cluster
        and instance, then the listener and its default acl, as one change.
        ``obj``: {cluster, instance, listener, acl, loadbalancers}; ``etag``: the listener's."""
        values, errors, _ = check_input(LEGACY_FIELDS, data, creating=True, is_admin=principal.is_admin)
        if errors:
            raise Invalid(errors)
        node_inputs = []
        node_fields = {k: f for k, f in Loadbalancer.all_fields().items() if k not in ("cluster_id", "tenant_id")}
        for index, raw in enumerate(values["loadbalancers"]):
            node, node_errors, _ = check_input(node_fields, raw, creating=True, is_admin=principal.is_admin)
            errors.extend((f"loadbalancers[{index}].{path}", message) for path, message in node_errors)
            node_inputs.append(node)
        if errors:
            raise Invalid(errors)
        with self._writing() as uow:
            session = uow.session
            pool = self._load(session, principal, Pool, values["pool_id"])
            self._require_owner(principal, pool)
            tenant_id = pool.tenant_id
            cluster = self._legacy_cluster(session, principal, values)
            change = _Change(self, session, dry_run)
            name = values["name"] or pool.name or "vip"
            if cluster is None:
                cluster = Cluster(id=new_id(), tenant_id=tenant_id, name=name, cluster_model="single",
                                  network=values["network"], shared=False, ha_addresses=[], attrs={},
                                  operating_status=OFFLINE)
                change.lock([cluster.id], new=[cluster.id])
                session.add(cluster)
                change.touch(cluster, "create")
            else:
                change.lock([cluster.id])
            created: dict[str, Any] = {"cluster": cluster}
            instance = next((i for i in cluster.instances if i.address == values["address"] and live(i)), None)
            if instance is not None and instance.tenant_id != tenant_id:
                raise Conflict(f"address {values['address']} is another tenant's instance on cluster {cluster.id}")
            if instance is None:
                instance = Instance(id=new_id(), tenant_id=tenant_id, name=name, address=values["address"], attrs={},
                                    operating_status=OFFLINE, cluster=cluster)
                session.add(instance)
                self._check(session, instance, {"address"}, creating=True)
                change.touch(instance, "create")
            listener = Listener(id=new_id(), tenant_id=tenant_id, name=name, port=values["port"],
                                protocol=values["protocol"], redirect=None, add_headers={}, attrs={},
                                operating_status=OFFLINE, instance=instance)
            session.add(listener)
            self._check(session, listener, {"port"}, creating=True)
            change.touch(listener, "create")
            acl = Acl(id=new_id(), tenant_id=tenant_id, name=name, condition=None, position=None,
                      operating_status=OFFLINE, listener=listener, pool=pool)
            session.add(acl)
            self._check(session, acl, {"condition", "listener_id", "pool_id"}, creating=True)
            change.touch(acl, "create")
            nodes = []
            if node_inputs and not (principal.is_admin or cluster.tenant_id == principal.tenant_id):
                raise Forbidden(f"cluster {cluster.id} is shared: only its owner may add loadbalancers")
            for node_values in node_inputs:
                node = Loadbalancer(id=new_id(), tenant_id=cluster.tenant_id, operating_status=OFFLINE,
                                    cluster=cluster, **node_values)
                session.add(node)
                change.touch(node, "create")
                nodes.append(node)
            created.update(instance=instance, listener=listener, acl=acl)
            ids = {key: (type(item), item.id) for key, item in created.items()}
            node_ids = [node.id for node in nodes]

            def compose(session: Session) -> dict[str, Any]:
                out: dict[str, Any] = {}
                for key, (model, item_id) in ids.items():
                    item = session.get(model, item_id)
                    out[key] = item.to_dict() if item is not None else None
                out["loadbalancers"] = [node.to_dict() for node_id in node_ids
                                        if (node := session.get(Loadbalancer, node_id)) is not None]
                return out

            outcome = self._finish(change, uow, listener, compose)
        return self._complete(outcome)

    # -- health and recovery ------------------------------------------------------------------------

    def report_member_health(self, cluster_id: str, reports: Mapping[str, str]) -> dict[str, Any]:
        """Record what the engines of a cluster say of members: key = member id or
        ``<pool Spec name>/<member Spec name>`` (as engine stats name them), value UP
        or DOWN. Operating statuses are recomputed. Returns {"updated": n, "unknown": [keys]}."""
        with self.store.unit_of_work() as uow:
            session = uow.session
            by_name: dict[str, str] = {}
            cluster = session.get(Cluster, cluster_id)
            if cluster is None:
                raise NotFound("cluster", cluster_id)
            for instance in cluster.instances:
                for listener in instance.listeners:
                    for acl in listener.acls:
                        for member in acl.pool.members:
                            by_name[f"{spec_name(acl.pool)}/{spec_name(member)}"] = member.id
                            by_name[member.id] = member.id
            updated, unknown = 0, []
            for key, state in reports.items():
                member_id = by_name.get(key)
                if member_id is None or state not in ("UP", "DOWN"):
                    unknown.append(key)
                    continue
                session.execute(update(Member).where(Member.id == member_id).values(health=state))
                updated += 1
            refresh_operating(session, [cluster_id])
            return {"updated": updated, "unknown": unknown}

    def recover(self, *, older_than: float = 0.0) -> int:
        """Set every object PENDING_* for more than ``older_than`` seconds to ERROR (a
        change that died between its transaction and its apply); returns how many."""
        cutoff = utcnow() - dt.timedelta(seconds=older_than)
        count = 0
        with self.store.unit_of_work() as uow:
            for model in MODELS.values():
                result = uow.execute(
                    update(model)
                    .where(model.provisioning_status.in_(PENDING), model.updated_at <= cutoff)
                    .values(provisioning_status=ERROR)
                    .execution_options(synchronize_session=False)
                )
                count += result.rowcount or 0
        if count:
            log.warning("recovered %d object(s) left PENDING_* by an interrupted change: now ERROR", count)
        return count

    # -- internals: access ----------------------------------------------------------------------------

    def _model(self, kind: str) -> type[Entity]:
        model = MODELS.get(kind)
        if model is None:
            raise Invalid([("kind", f"unknown kind {kind!r} (one of {', '.join(KINDS)})")])
        return model

    @staticmethod
    def _visible(principal: Principal, obj: Entity) -> bool:
        return (principal.is_admin or obj.tenant_id == principal.tenant_id
                or (isinstance(obj, Cluster) and obj.shared))

    def _load(self, session: Session, principal: Principal, model: type[Entity], id: str) -> Any:
        obj = session.get(model, id) if isinstance(id, str) else None
        if obj is None or not self._visible(principal, obj):
            raise NotFound(model.KIND, str(id))
        return obj

    @staticmethod
    def _require_owner(principal: Principal, obj: Entity) -> None:
        if not (principal.is_admin or obj.tenant_id == principal.tenant_id):
            raise Forbidden(f"{obj.KIND} {obj.id} is shared with you: only its owner may change it")

    @staticmethod
    def _scope(statement: Any, model: type[Entity], principal: Principal) -> Any:
        if principal.is_admin:
            return statement
        if model is Cluster:
            return statement.where(or_(Cluster.tenant_id == principal.tenant_id, Cluster.shared.is_(True)))
        return statement.where(model.tenant_id == principal.tenant_id)

    def _input(self, principal: Principal, model: type[Entity], data: Any, *, creating: bool,
               current: dict[str, Any] | None = None) -> dict[str, Any]:
        values, errors, forbidden = check_input(model.all_fields(), data, creating=creating,
                                                is_admin=principal.is_admin, current=current,
                                                read_only=model.read_only())
        if errors:
            raise Invalid(errors)
        if forbidden:
            raise Forbidden(f"only an admin may set {', '.join(forbidden)}")
        return values

    def _parent_for_create(self, session: Session, principal: Principal, model: type[Entity],
                           values: dict[str, Any]) -> Entity | None:
        if model.PARENT is None:
            return None
        field_name, kind = model.PARENT
        parent = session.get(MODELS[kind], values[field_name])
        if parent is None or not self._visible(principal, parent):
            raise Invalid([(field_name, f"{kind} {values[field_name]} not found")])
        owner = principal.is_admin or parent.tenant_id == principal.tenant_id
        if not owner and not (model is Instance and isinstance(parent, Cluster) and parent.shared):
            raise Forbidden(f"{kind} {parent.id} is shared with you: only its owner may add {model.KIND}s to it")
        return parent

    def _owner_for_create(self, session: Session, principal: Principal, model: type[Entity],
                          parent: Entity | None, given: str | None) -> str:
        if given is not None and not principal.is_admin and given != principal.tenant_id:
            raise Forbidden("only an admin may create objects for another tenant")
        on_shared = model is Instance and isinstance(parent, Cluster) and parent.shared
        if parent is None or on_shared:
            tenant_id = given or principal.tenant_id
        else:
            tenant_id = parent.tenant_id
            if given is not None and given != tenant_id:
                raise Invalid([("tenant_id", f"must be the {parent.KIND}'s tenant ({tenant_id})")])
        if tenant_id != principal.tenant_id and session.get(Tenant, tenant_id) is None:
            raise Invalid([("tenant_id", f"tenant {tenant_id} not found")])
        return tenant_id

    def _pool_ref(self, session: Session, principal: Principal, pool_id: str, tenant_id: str) -> Pool:
        pool = session.get(Pool, pool_id)
        if pool is None or not self._visible(principal, pool):
            raise Invalid([("pool_id", f"pool {pool_id} not found")])
        if pool.tenant_id != tenant_id:
            raise Invalid([("pool_id", "the pool must belong to the listener's tenant")])
        if pool.provisioning_status == PENDING_DELETE:
            raise Conflict(f"pool {pool_id} is being deleted")
        return pool

    def _legacy_cluster(self, session: Session, principal: Principal, values: dict[str, Any]) -> Cluster | None:
        if values["cluster_id"] is not None:
            cluster = session.get(Cluster, values["cluster_id"])
            if cluster is None or not self._visible(principal, cluster):
                raise Invalid([("cluster_id", f"cluster {values['cluster_id']} not found")])
            return cluster
        if values["network"] is None:
            return None
        candidates = session.scalars(
            self._scope(select(Cluster), Cluster, principal)
            .where(Cluster.network == values["network"], Cluster.provisioning_status != PENDING_DELETE)
            .order_by(Cluster.created_at, Cluster.id)
        ).all()
        own = [c for c in candidates if c.tenant_id == principal.tenant_id]
        return (own or candidates or [None])[0]

    # -- internals: the change pipeline -------------------------------------------------------------

    def _certificate(self, obj_id: str, values: dict[str, Any], existing: TlsCertificate | None) -> dict[str, Any]:
        """Check and seal a certificate's material (what ``values`` sends, the rest
        from ``existing``); returns the columns to store."""
        chain = values.get("certificate") or (existing.certificate if existing is not None else "")
        if "private_key" in values:
            key = values["private_key"]
            passphrase = values.get("passphrase")
        elif existing is not None:
            key = self.secrets.open_text(existing.private_key, f"tls_certificates.private_key:{existing.id}")
            if "passphrase" in values:
                passphrase = values["passphrase"]
            elif existing.passphrase is not None:
                passphrase = self.secrets.open_text(existing.passphrase, f"tls_certificates.passphrase:{existing.id}")
            else:
                passphrase = None
        else:
            key, passphrase = None, values.get("passphrase")
        parsed, chain_text, key_text, passphrase_text = rules.certificate_material(chain, key, passphrase)
        return {
            "certificate": chain_text,
            "private_key": self.secrets.seal(key_text, f"tls_certificates.private_key:{obj_id}"),
            "passphrase": (self.secrets.seal(passphrase_text, f"tls_certificates.passphrase:{obj_id}")
                           if passphrase_text is not None else None),
            "hostnames": list(parsed.hostnames),
            "subject": parsed.subject,
            "not_after": parsed.not_after,
            "fingerprint_sha256": parsed.fingerprint_sha256,
        }

    @staticmethod
    def _check(session: Session, obj: Entity, changed: set[str], *, creating: bool) -> None:
        with session.no_autoflush:
            rules.check(session, obj, changed, creating)

    def _current_spec(self, session: Session, cluster_id: str) -> Spec:
        try:
            return validate(resolve(session, cluster_id))
        except Invalid:
            log.warning("cluster %s: the stored model does not resolve to a valid Spec; diffing from empty", cluster_id)
            return Spec()

    def _finish(self, change: _Change, uow: Any, primary: Entity | None,
                compose: Callable[[Session], dict[str, Any]] | None = None) -> _Outcome:
        return change.finish(uow, primary, compose)

    @contextmanager
    def _writing(self) -> Iterator[Any]:
        """A write unit of work whose races with other writers end as 409s: a unique
        key taken meanwhile, or a row changed since it was read (its version)."""
        try:
            with self.store.unit_of_work() as uow:
                yield uow
        except IntegrityError:
            raise Conflict("the change conflicts with another object (a unique field or a reference)") from None
        except StaleDataError:
            raise Conflict("the object was changed by another request meanwhile: read it again and retry") from None

    def _complete(self, outcome: _Outcome) -> ChangeResult:
        """After the commit: apply, settle, answer. A dry run only answers."""
        if outcome.dry_run:
            return ChangeResult(outcome.obj, None, outcome.diffs, dry_run=True)
        try:
            results = self._apply(outcome)
        except Exception as exc:  # never leave the change PENDING: settle it as failed
            log.exception("applying a change failed")
            results = {cluster_id: {node["id"]: f"internal error while applying: {type(exc).__name__}"
                                    for node in outcome.payloads.get(cluster_id, (None, {}, []))[2]}
                       for cluster_id in outcome.clusters}
        obj, etag = self._settle(outcome, results)
        return ChangeResult(obj, etag, outcome.diffs, applied=results)

    def _apply(self, outcome: _Outcome) -> dict[str, dict[str, str | None]]:
        results: dict[str, dict[str, str | None]] = {}
        for cluster_id in outcome.clusters:
            spec, files, nodes = outcome.payloads.get(cluster_id, (None, {}, []))
            if spec is None or not nodes or self.applier is None:
                results[cluster_id] = {}
                continue
            try:
                answer = dict(self.applier.apply(cluster_id, spec, files, nodes))
            except Exception as exc:  # an applier bug must not leave the cluster PENDING
                log.exception("cluster %s: the applier raised", cluster_id)
                answer = {node["id"]: f"apply failed: {type(exc).__name__}: {exc}"[:500] for node in nodes}
            results[cluster_id] = {
                node["id"]: (answer[node["id"]] if node["id"] in answer else "the applier gave no answer for this node")
                for node in nodes
            }
            failures = {node_id: error for node_id, error in results[cluster_id].items() if error}
            for node_id, error in failures.items():
                log.warning("cluster %s revision %s: node %s failed: %s", cluster_id, spec.revision, node_id, error)
            log.info("cluster %s revision %s applied to %d of %d node(s)", cluster_id, spec.revision,
                     len(nodes) - len(failures), len(nodes))
        return results

    def _settle(self, outcome: _Outcome, results: dict[str, dict[str, str | None]]) -> tuple[dict[str, Any] | None, str | None]:
        failed = {cluster_id for cluster_id, answer in results.items() if any(answer.values())}
        event = "failed" if failed else "applied"
        with self.store.unit_of_work() as uow:
            session = uow.session
            deleted: set[str] = set()
            for model, obj_id in outcome.touched:
                obj = session.get(model, obj_id)
                if obj is None:
                    continue
                status = next_status(obj.provisioning_status, event)
                if status == DELETED:
                    session.delete(obj)
                    deleted.add(obj_id)
                else:
                    session.execute(update(model).where(model.id == obj_id).values(provisioning_status=status))
            session.flush()
            for cluster_id in outcome.clusters:
                if cluster_id in deleted or session.get(Cluster, cluster_id) is None:
                    continue
                session.execute(update(Cluster).where(Cluster.id == cluster_id)
                                .values(provisioning_status=ERROR if cluster_id in failed else ACTIVE))
                spec = outcome.payloads.get(cluster_id, (None,))[0]
                for node_id, error in results.get(cluster_id, {}).items():
                    values: dict[str, Any] = {"provisioning_status": ERROR if error else ACTIVE, "last_error": error}
                    if not error and spec is not None:
                        values["revision"] = spec.revision
                    session.execute(update(Loadbalancer)
                                    .where(Loadbalancer.id == node_id, Loadbalancer.provisioning_status != PENDING_DELETE)
                                    .values(**values))
            refresh_operating(session, [c for c in outcome.clusters if c not in deleted], outcome.pools - deleted)
            if outcome.compose is not None:
                listener = session.get(*outcome.primary) if outcome.primary else None
                return outcome.compose(session), listener.etag if listener is not None else None
            if outcome.primary is None:
                return None, None
            obj = session.get(*outcome.primary)
            if obj is None:
                return None, None
            return obj.to_dict(), obj.etag


LEGACY_FIELDS: dict[str, Field] = {
    "pool_id": Field("string", s.identifier, required=True, ref="pool"),
    "address": Field("string", s.ip_address, required=True),
    "port": Field("integer", s.integer(1, 65535), required=True),
    "protocol": Field("string", s.choice(*LISTENER_PROTOCOLS, upper=True), default="HTTP", choices=LISTENER_PROTOCOLS),
    "name": Field("string", s.text(), default=""),
    "cluster_id": Field("string", s.identifier, nullable=True, ref="cluster"),
    "network": Field("string", s.text(), nullable=True),
    "loadbalancers": Field("array", lambda value: _object_list(value), default=list),
}


def _object_list(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
        raise ValueError("expected a list of objects")
    return [dict(item) for item in value]


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _check_if_match(obj: Entity, if_match: str | None) -> None:
    if if_match is None:
        return
    tags = [tag.strip() for tag in if_match.split(",")]
    if "*" in tags:
        return
    normalised = {tag[2:] if tag.startswith("W/") else tag for tag in tags}
    normalised |= {f'"{tag}"' for tag in normalised if not tag.startswith('"')}
    if obj.etag not in normalised:
        raise PreconditionFailed(if_match, obj.etag)


def _clusters_below(parent: Entity) -> set[str]:
    """The clusters a new child of ``parent`` lands on."""
    return rules.clusters_of(parent)


def _chain_of(obj: Entity) -> list[tuple[str, Any]]:
    """The cascade chain of ``obj`` (a pool's cluster level is added by the caller)."""
    if isinstance(obj, Cluster):
        return [("cluster", obj)]
    if isinstance(obj, Instance):
        return [("cluster", obj.cluster), ("instance", obj)]
    if isinstance(obj, Listener):
        return [("cluster", obj.instance.cluster), ("instance", obj.instance), ("listener", obj)]
    if isinstance(obj, Pool):
        return [("pool", obj)]
    if isinstance(obj, (Member, Healthmonitor)):
        return [("pool", obj.pool), (obj.KIND, obj)]
    return [(obj.KIND, obj)]


def _scalar_columns(model: type[Entity]) -> dict[str, Any]:
    """Columns a list may filter and sort on: scalar ones, never a secret."""
    hidden = {key for key, f in model.all_fields().items() if f.write_only}
    out = {}
    for column in model.__table__.columns:
        if column.key in hidden or column.type.__class__.__name__ == "JSON":
            continue
        out[column.key] = getattr(model, column.key)
    return out


def _typed(column: Any, raw: str) -> Any:
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        python_type = str
    if python_type is bool:
        if raw.lower() in ("true", "1", "yes"):
            return True
        if raw.lower() in ("false", "0", "no"):
            return False
        raise ValueError("expected true or false")
    if python_type is int:
        try:
            return int(raw)
        except ValueError:
            raise ValueError("expected an integer") from None
    if python_type is float:
        try:
            return float(raw)
        except ValueError:
            raise ValueError("expected a number") from None
    if python_type is dt.datetime:
        try:
            return dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("expected an ISO 8601 time") from None
    return raw
