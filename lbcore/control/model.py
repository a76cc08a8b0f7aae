"""The entity model: one SQLAlchemy 2 typed class per entity, its wire schema beside it.

Entities (the 2014 proposal's model, with Octavia's statuses)::

    cluster ─┬─ loadbalancer            (a node: an lbcore engine or haproxy)
             └─ instance ── listener ─┬─ tls_certificate
                                      └─ acl ──> pool ─┬─ member
                                                       └─ healthmonitor
    tenant ── token

A pool belongs to a tenant, not a cluster: an acl binds it to a listener, and it may
serve listeners in several clusters. Every entity has an id (uuid), tenant_id,
name, created_at/updated_at, ``version`` (bumped by SQLAlchemy on every configuration
update: the ETag is ``"<version>"``; status transitions do not bump it), a
provisioning_status and an operating_status (``lbcore.control.status``).

Each class carries ``FIELDS`` (the writable wire fields, ``lbcore.control.schema``)
and ``READ_ONLY`` (derived or status fields it also returns); ``to_dict()`` is the
one serialisation. Secrets (a certificate's private key and passphrase) are stored
as ciphertext only (``lbcore.control.secrets``) and are never in ``to_dict()`` or a
repr.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column, relationship

from lbcore.control import schema as s
from lbcore.control.cascade import attrs_check
from lbcore.control.schema import Field
from lbcore.control.status import OPERATING_STATUSES, PROVISIONING_STATUSES

__all__ = [
    "Acl",
    "Base",
    "Cluster",
    "Entity",
    "Healthmonitor",
    "Instance",
    "KINDS",
    "Listener",
    "Loadbalancer",
    "MODELS",
    "Member",
    "Pool",
    "Tenant",
    "TlsCertificate",
    "Token",
    "new_id",
    "utcnow",
]

CLUSTER_MODELS = ("single", "active-standby", "active-active")
DRIVERS = ("native", "haproxy")
ROLES = ("standalone", "master", "backup", "active")
LISTENER_PROTOCOLS = ("HTTP", "HTTPS", "TCP", "TLS-PASSTHROUGH")
MONITOR_TYPES = ("TCP", "HTTP", "HTTPS", "TLS-HELLO")
ADMIN_STATES = ("enabled", "drain", "maint")


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps no zone: read back as UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value


class Base(DeclarativeBase):
    pass


# -- tenants and tokens ---------------------------------------------------------------------------


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "created_at": _plain(self.created_at)}

    def __repr__(self) -> str:
        return f"<Tenant {self.id} {self.name!r}>"


class Token(Base):
    """A bearer token: ``lbc_<id>_<secret>`` is shown once; only sha256(secret) is kept."""

    __tablename__ = "tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    digest: Mapped[str] = mapped_column(String(64))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"<Token {self.id} tenant={self.tenant_id} admin={self.is_admin}>"


# -- entities -------------------------------------------------------------------------------------

_COMMON_FIELDS: dict[str, Field] = {
    "name": Field("string", s.text(), default="", description="free text; the Spec names objects name-<id8>"),
    "tenant_id": Field("string", s.identifier, mutable=False, nullable=True,
                       description="owner; defaults to the caller's tenant (another tenant's: admin only)"),
}
_COMMON_READ_ONLY = {
    "id": "uuid",
    "kind": "the entity's kind (cluster, listener, ...)",
    "created_at": "ISO 8601, UTC",
    "updated_at": "ISO 8601, UTC",
    "version": "configuration version; the ETag is its value in double quotes",
    "provisioning_status": " | ".join(PROVISIONING_STATUSES),
    "operating_status": " | ".join(OPERATING_STATUSES),
}


class Entity(Base):
    """Columns and behaviour every entity shares."""

    __abstract__ = True

    KIND: ClassVar[str]
    FIELDS: ClassVar[dict[str, Field]]
    READ_ONLY: ClassVar[dict[str, str]] = {}
    PARENT: ClassVar[tuple[str, str] | None] = None  # (id field, kind) of the owning object

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    provisioning_status: Mapped[str] = mapped_column(String(16), default="PENDING_CREATE", index=True)
    operating_status: Mapped[str] = mapped_column(String(16), default="OFFLINE")

    @declared_attr
    def tenant_id(cls) -> Mapped[str]:
        return mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"), index=True)

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        return {"version_id_col": cls.__table__.c.version}

    @property
    def etag(self) -> str:
        return f'"{self.version}"'

    @classmethod
    def all_fields(cls) -> dict[str, Field]:
        return {**_COMMON_FIELDS, **cls.FIELDS}

    @classmethod
    def read_only(cls) -> dict[str, str]:
        return {**_COMMON_READ_ONLY, **cls.READ_ONLY}

    def to_dict(self) -> dict[str, Any]:
        """The wire form: every readable field, JSON-able; never a secret."""
        out: dict[str, Any] = {"id": self.id, "kind": self.KIND}
        for key, field in self.all_fields().items():
            if not field.write_only:
                out[key] = _plain(getattr(self, key))
        for key in self.read_only():
            if key not in out:
                out[key] = _plain(getattr(self, key))
        return out

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.name!r} {self.provisioning_status}>"


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _ref(kind: str) -> Field:
    return Field("string", s.identifier, required=True, mutable=False, ref=kind, description=f"the {kind} it belongs to")


class Cluster(Entity):
    """A group of load-balancer nodes carrying the same configuration."""

    __tablename__ = "clusters"
    KIND = "cluster"
    FIELDS = {
        "cluster_model": Field("string", s.choice(*CLUSTER_MODELS), default="single", mutable=False,
                               choices=CLUSTER_MODELS, description="fixed at create (switching HA models live is not offered)"),
        "shared": Field("boolean", s.boolean, default=False, admin_only=True,
                        description="other tenants may put instances (and so listeners) on it"),
        "network": Field("string", s.text(), nullable=True, description="the network the cluster serves"),
        "ha_addresses": Field("array", s.ip_list, default=list, description="the nodes' HA addresses (VRRP, ECMP)"),
        "attrs": Field("object", attrs_check("cluster"), default=dict, description="cascading attributes"),
    }
    READ_ONLY = {"revision": "the Spec revision the model resolves to now"}

    cluster_model: Mapped[str] = mapped_column(String(16), default="single")
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    network: Mapped[str | None] = mapped_column(String(255), nullable=True)
    ha_addresses: Mapped[list[str]] = mapped_column(JSON, default=list)
    attrs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    revision: Mapped[str | None] = mapped_column(String(32), nullable=True)

    loadbalancers: Mapped[list["Loadbalancer"]] = relationship(
        back_populates="cluster", cascade="all, delete-orphan", passive_deletes=True, order_by="Loadbalancer.created_at")
    instances: Mapped[list["Instance"]] = relationship(back_populates="cluster", order_by="Instance.created_at")


class Loadbalancer(Entity):
    """One node of a cluster; ``management_address`` is its node agent (host:port)."""

    __tablename__ = "loadbalancers"
    KIND = "loadbalancer"
    PARENT = ("cluster_id", "cluster")
    FIELDS = {
        "cluster_id": _ref("cluster"),
        "driver": Field("string", s.choice(*DRIVERS), default="native", choices=DRIVERS),
        "management_address": Field("string", s.host_port, required=True, description="host:port of the node agent"),
        "role": Field("string", s.choice(*ROLES), default="standalone", choices=ROLES),
    }
    READ_ONLY = {"revision": "the Spec revision last applied to this node", "last_error": "why the last apply failed"}

    cluster_id: Mapped[str] = mapped_column(ForeignKey("clusters.id", ondelete="CASCADE"), index=True)
    driver: Mapped[str] = mapped_column(String(16), default="native")
    management_address: Mapped[str] = mapped_column(String(300))
    role: Mapped[str] = mapped_column(String(16), default="standalone")
    revision: Mapped[str | None] = mapped_column(String(32), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)

    cluster: Mapped[Cluster] = relationship(back_populates="loadbalancers")


class Instance(Entity):
    """An IP address (v4 or v6) of a cluster on which listeners serve."""

    __tablename__ = "instances"
    __table_args__ = (UniqueConstraint("cluster_id", "address", name="uq_instances_cluster_address"),)
    KIND = "instance"
    PARENT = ("cluster_id", "cluster")
    FIELDS = {
        "cluster_id": _ref("cluster"),
        "address": Field("string", s.ip_address, required=True, description="IPv4 or IPv6 address"),
        "attrs": Field("object", attrs_check("instance"), default=dict, description="cascading attributes"),
    }

    cluster_id: Mapped[str] = mapped_column(ForeignKey("clusters.id", ondelete="RESTRICT"), index=True)
    address: Mapped[str] = mapped_column(String(45))
    attrs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    cluster: Mapped[Cluster] = relationship(back_populates="instances")
    listeners: Mapped[list["Listener"]] = relationship(back_populates="instance", order_by="Listener.port")


class Listener(Entity):
    """One service on one port of an instance."""

    __tablename__ = "listeners"
    __table_args__ = (UniqueConstraint("instance_id", "port", name="uq_listeners_instance_port"),)
    KIND = "listener"
    PARENT = ("instance_id", "instance")
    FIELDS = {
        "instance_id": _ref("instance"),
        "port": Field("integer", s.integer(1, 65535), required=True),
        "protocol": Field("string", s.choice(*LISTENER_PROTOCOLS, upper=True), required=True, mutable=False,
                          choices=LISTENER_PROTOCOLS),
        "redirect": Field("object", s.redirect, nullable=True,
                          description="{code, scheme, host, port}: answer every request with a redirect"),
        "add_headers": Field("object", s.headers, default=dict, description="request headers to set (http, https)"),
        "attrs": Field("object", attrs_check("listener"), default=dict, description="cascading attributes"),
    }

    instance_id: Mapped[str] = mapped_column(ForeignKey("instances.id", ondelete="RESTRICT"), index=True)
    port: Mapped[int] = mapped_column(Integer)
    protocol: Mapped[str] = mapped_column(String(16))
    redirect: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    add_headers: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    attrs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    instance: Mapped[Instance] = relationship(back_populates="listeners")
    certificates: Mapped[list["TlsCertificate"]] = relationship(
        back_populates="listener", cascade="all, delete-orphan", passive_deletes=True,
        order_by="(TlsCertificate.created_at, TlsCertificate.id)")
    acls: Mapped[list["Acl"]] = relationship(
        back_populates="listener", cascade="all, delete-orphan", passive_deletes=True,
        order_by="(Acl.position, Acl.created_at, Acl.id)")


class TlsCertificate(Entity):
    """A certificate chain and its key for an HTTPS listener; one per listener is the
    default, the others are chosen by SNI. ``private_key`` and ``passphrase`` hold
    ciphertext; the host names (CN and DNS SANs) are derived when it is stored."""

    __tablename__ = "tls_certificates"
    KIND = "tls_certificate"
    PARENT = ("listener_id", "listener")
    FIELDS = {
        "listener_id": _ref("listener"),
        "certificate": Field("string", s.pem("certificate chain"), required=True,
                             description="PEM chain: the leaf and its intermediates (a key in it is moved to private_key)"),
        "private_key": Field("string", s.pem("private key"), nullable=True, write_only=True,
                             description="PEM key (RSA or ECDSA), encrypted at rest, never returned"),
        "passphrase": Field("string", s.secret_text, nullable=True, write_only=True,
                            description="decrypts an encrypted private_key; encrypted at rest, never returned"),
        "is_default": Field("boolean", s.boolean, default=False,
                            description="the certificate served without SNI match (the first one is the default)"),
    }
    READ_ONLY = {
        "hostnames": "CN and DNS SANs, normalised",
        "subject": "RFC 4514",
        "not_after": "ISO 8601, UTC",
        "fingerprint_sha256": "of the leaf certificate",
        "has_private_key": "always true: the key is stored, never shown",
        "has_passphrase": "whether a passphrase is stored",
    }

    listener_id: Mapped[str] = mapped_column(ForeignKey("listeners.id", ondelete="CASCADE"), index=True)
    certificate: Mapped[str] = mapped_column(Text)
    private_key: Mapped[str] = mapped_column(Text)  # ciphertext
    passphrase: Mapped[str | None] = mapped_column(Text, nullable=True)  # ciphertext
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    hostnames: Mapped[list[str]] = mapped_column(JSON, default=list)
    subject: Mapped[str] = mapped_column(Text, default="")
    not_after: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    fingerprint_sha256: Mapped[str] = mapped_column(String(64), default="")

    listener: Mapped[Listener] = relationship(back_populates="certificates")

    @property
    def has_private_key(self) -> bool:
        return bool(self.private_key)

    @property
    def has_passphrase(self) -> bool:
        return bool(self.passphrase)


class Pool(Entity):
    """A set of members and how to choose among them; bound to listeners by acls."""

    __tablename__ = "pools"
    KIND = "pool"
    FIELDS = {
        "algorithm": Field("string", s.algorithm, nullable=True,
                           description="roundrobin | leastconn | source | uri | hdr(NAME) | random; null: inherited"),
        "persistence": Field("object", s.persistence, nullable=True, description="{type: cookie|source, name, timeout}"),
        "outlier": Field("object", s.outlier, nullable=True,
                         description="passive checks {consecutive_errors, consecutive_5xx, ejection_time}"),
        "attrs": Field("object", attrs_check("pool"), default=dict, description="cascading attributes"),
    }

    algorithm: Mapped[str | None] = mapped_column(String(80), nullable=True)
    persistence: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    outlier: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    attrs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    members: Mapped[list["Member"]] = relationship(
        back_populates="pool", cascade="all, delete-orphan", passive_deletes=True,
        order_by="(Member.created_at, Member.id)")
    healthmonitor: Mapped["Healthmonitor | None"] = relationship(
        back_populates="pool", cascade="all, delete-orphan", passive_deletes=True, uselist=False)
    acls: Mapped[list["Acl"]] = relationship(back_populates="pool")


class Member(Entity):
    """One backend server of a pool."""

    __tablename__ = "members"
    __table_args__ = (UniqueConstraint("pool_id", "address", "port", name="uq_members_pool_address_port"),)
    KIND = "member"
    PARENT = ("pool_id", "pool")
    FIELDS = {
        "pool_id": _ref("pool"),
        "address": Field("string", s.ip_address, required=True),
        "port": Field("integer", s.integer(1, 65535), required=True),
        "weight": Field("integer", s.integer(0, 256), nullable=True, description="0..256; null: inherited (default 1)"),
        "backup": Field("boolean", s.boolean, default=False, description="serves only when no primary is up"),
        "admin_state": Field("string", s.choice(*ADMIN_STATES), default="enabled", choices=ADMIN_STATES),
        "monitor_address": Field("string", s.ip_address, nullable=True, description="health checks go here instead"),
        "monitor_port": Field("integer", s.integer(1, 65535), nullable=True, description="health checks use this port"),
    }
    READ_ONLY = {"health": "UP | DOWN as the engines last reported; null: no report"}

    pool_id: Mapped[str] = mapped_column(ForeignKey("pools.id", ondelete="CASCADE"), index=True)
    address: Mapped[str] = mapped_column(String(45))
    port: Mapped[int] = mapped_column(Integer)
    weight: Mapped[int | None] = mapped_column(Integer, nullable=True)
    backup: Mapped[bool] = mapped_column(Boolean, default=False)
    admin_state: Mapped[str] = mapped_column(String(16), default="enabled")
    monitor_address: Mapped[str | None] = mapped_column(String(45), nullable=True)
    monitor_port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    health: Mapped[str | None] = mapped_column(String(8), nullable=True)

    pool: Mapped[Pool] = relationship(back_populates="members")


_HTTP_ONLY = "(http and https monitors)"


class Healthmonitor(Entity):
    """How a pool's members are checked (one per pool). interval, timeout, rise and
    fall left null are inherited (pool, cluster, default)."""

    __tablename__ = "healthmonitors"
    KIND = "healthmonitor"
    PARENT = ("pool_id", "pool")
    FIELDS = {
        "pool_id": _ref("pool"),
        "type": Field("string", s.choice(*MONITOR_TYPES, upper=True), required=True, choices=MONITOR_TYPES),
        "interval": Field("number", s.duration, nullable=True, description="seconds (or 2s, 500ms); null: inherited"),
        "timeout": Field("number", s.duration, nullable=True, description="seconds; null: inherited"),
        "rise": Field("integer", s.integer(1, 100), nullable=True, description="null: inherited"),
        "fall": Field("integer", s.integer(1, 100), nullable=True, description="null: inherited"),
        "path": Field("string", s.health_field("path"), nullable=True, description=f"request path {_HTTP_ONLY}"),
        "method": Field("string", s.health_field("method"), nullable=True, description=f"request method {_HTTP_ONLY}"),
        "expected_codes": Field("string", s.health_field("expect"), nullable=True,
                                description=f"accepted statuses, like 200-399 {_HTTP_ONLY}"),
        "host": Field("string", s.health_field("host"), nullable=True, description=f"Host header {_HTTP_ONLY}"),
    }

    pool_id: Mapped[str] = mapped_column(ForeignKey("pools.id", ondelete="CASCADE"), unique=True)
    type: Mapped[str] = mapped_column(String(16))
    interval: Mapped[float | None] = mapped_column(Float, nullable=True)
    timeout: Mapped[float | None] = mapped_column(Float, nullable=True)
    rise: Mapped[int | None] = mapped_column(Integer, nullable=True)
    fall: Mapped[int | None] = mapped_column(Integer, nullable=True)
    path: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    method: Mapped[str | None] = mapped_column(String(20), nullable=True)
    expected_codes: Mapped[str | None] = mapped_column(String(255), nullable=True)
    host: Mapped[str | None] = mapped_column(String(300), nullable=True)

    pool: Mapped[Pool] = relationship(back_populates="healthmonitor")


class Acl(Entity):
    """Binds a pool to a listener under a condition, at a position. A null condition
    makes the pool the listener's default; with none such, the first pool bound is."""

    __tablename__ = "acls"
    KIND = "acl"
    PARENT = ("listener_id", "listener")
    FIELDS = {
        "listener_id": _ref("listener"),
        "pool_id": Field("string", s.identifier, required=True, ref="pool", description="the pool it routes to"),
        "condition": Field("string|object", s.condition, nullable=True,
                           description="compact (hdr(host) -i api.example.com) or structured ({path: {prefix: /api}}); "
                                       "null: the listener's default pool"),
        "position": Field("integer", s.integer(0, 1_000_000), nullable=True,
                          description="order among the listener's acls (first match wins); null: last"),
    }

    listener_id: Mapped[str] = mapped_column(ForeignKey("listeners.id", ondelete="CASCADE"), index=True)
    pool_id: Mapped[str] = mapped_column(ForeignKey("pools.id", ondelete="RESTRICT"), index=True)
    condition: Mapped[Any] = mapped_column(JSON(none_as_null=True), nullable=True)
    position: Mapped[int] = mapped_column(Integer, default=0)

    listener: Mapped[Listener] = relationship(back_populates="acls")
    pool: Mapped[Pool] = relationship(back_populates="acls")


MODELS: dict[str, type[Entity]] = {
    cls.KIND: cls for cls in (Cluster, Loadbalancer, Instance, Listener, TlsCertificate, Pool, Member, Healthmonitor, Acl)
}
KINDS = tuple(MODELS)
