"""The initial schema: tenants, tokens and the nine entities.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Child tables after their parents; dropped in the reverse order.
TABLES = ("tenants", "tokens", "clusters", "pools", "loadbalancers", "instances", "listeners",
          "tls_certificates", "members", "healthmonitors", "acls")


def _when(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def _entity(table: str, *columns: sa.Column | sa.Constraint, parent: tuple[str, str, str] | None = None,
            index_parent: bool = True) -> None:
    """Create an entity table: the shared columns, ``columns``, and the parent
    foreign key ``(column, parent table, on delete)``."""
    shared = [
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id", ondelete="RESTRICT"), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        _when("created_at"),
        _when("updated_at"),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("provisioning_status", sa.String(16), nullable=False),
        sa.Column("operating_status", sa.String(16), nullable=False),
    ]
    if parent is not None:
        column, target, ondelete = parent
        shared.append(sa.Column(column, sa.String(36), sa.ForeignKey(f"{target}.id", ondelete=ondelete), nullable=False))
    op.create_table(table, *shared, *columns)
    op.create_index(f"ix_{table}_tenant_id", table, ["tenant_id"])
    op.create_index(f"ix_{table}_provisioning_status", table, ["provisioning_status"])
    if parent is not None and index_parent:
        op.create_index(f"ix_{table}_{parent[0]}", table, [parent[0]])


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        _when("created_at"),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("is_admin", sa.Boolean, nullable=False),
        _when("created_at"),
    )
    op.create_index("ix_tokens_tenant_id", "tokens", ["tenant_id"])
    _entity(
        "clusters",
        sa.Column("cluster_model", sa.String(16), nullable=False),
        sa.Column("shared", sa.Boolean, nullable=False),
        sa.Column("network", sa.String(255), nullable=True),
        sa.Column("ha_addresses", sa.JSON, nullable=False),
        sa.Column("attrs", sa.JSON, nullable=False),
        sa.Column("revision", sa.String(32), nullable=True),
    )
    _entity(
        "pools",
        sa.Column("algorithm", sa.String(80), nullable=True),
        sa.Column("persistence", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("outlier", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("attrs", sa.JSON, nullable=False),
    )
    _entity(
        "loadbalancers",
        sa.Column("driver", sa.String(16), nullable=False),
        sa.Column("management_address", sa.String(300), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("revision", sa.String(32), nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        parent=("cluster_id", "clusters", "CASCADE"),
    )
    _entity(
        "instances",
        sa.Column("address", sa.String(45), nullable=False),
        sa.Column("attrs", sa.JSON, nullable=False),
        sa.UniqueConstraint("cluster_id", "address", name="uq_instances_cluster_address"),
        parent=("cluster_id", "clusters", "RESTRICT"),
    )
    _entity(
        "listeners",
        sa.Column("port", sa.Integer, nullable=False),
        sa.Column("protocol", sa.String(16), nullable=False),
        sa.Column("redirect", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("add_headers", sa.JSON, nullable=False),
        sa.Column("attrs", sa.JSON, nullable=False),
        sa.UniqueConstraint("instance_id", "port", name="uq_listeners_instance_port"),
        parent=("instance_id", "instances", "RESTRICT"),
    )
    _entity(
        "tls_certificates",
        sa.Column("certificate", sa.Text, nullable=False),
        sa.Column("private_key", sa.Text, nullable=False),
        sa.Column("passphrase", sa.Text, nullable=True),
        sa.Column("is_default", sa.Boolean, nullable=False),
        sa.Column("hostnames", sa.JSON, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("fingerprint_sha256", sa.String(64), nullable=False),
        parent=("listener_id", "listeners", "CASCADE"),
    )
    _entity(
        "members",
        sa.Column("address", sa.String(45), nullable=False),
        sa.Column("port", sa.Integer, nullable=False),
        sa.Column("weight", sa.Integer, nullable=True),
        sa.Column("backup", sa.Boolean, nullable=False),
        sa.Column("admin_state", sa.String(16), nullable=False),
        sa.Column("monitor_address", sa.String(45), nullable=True),
        sa.Column("monitor_port", sa.Integer, nullable=True),
        sa.Column("health", sa.String(8), nullable=True),
        sa.UniqueConstraint("pool_id", "address", "port", name="uq_members_pool_address_port"),
        parent=("pool_id", "pools", "CASCADE"),
    )
    _entity(
        "healthmonitors",
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("interval", sa.Float, nullable=True),
        sa.Column("timeout", sa.Float, nullable=True),
        sa.Column("rise", sa.Integer, nullable=True),
        sa.Column("fall", sa.Integer, nullable=True),
        sa.Column("path", sa.String(2048), nullable=True),
        sa.Column("method", sa.String(20), nullable=True),
        sa.Column("expected_codes", sa.String(255), nullable=True),
        sa.Column("host", sa.String(300), nullable=True),
        sa.UniqueConstraint("pool_id"),
        parent=("pool_id", "pools", "CASCADE"),
        index_parent=False,
    )
    _entity(
        "acls",
        sa.Column("pool_id", sa.String(36), sa.ForeignKey("pools.id", ondelete="RESTRICT"), nullable=False),
        sa.Column("condition", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("position", sa.Integer, nullable=False),
        parent=("listener_id", "listeners", "CASCADE"),
    )
    op.create_index("ix_acls_pool_id", "acls", ["pool_id"])


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)
