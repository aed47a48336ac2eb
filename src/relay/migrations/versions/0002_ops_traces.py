"""Ops traces: trace payloads stored before delivery to an observability endpoint.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

Self-contained (no helpers imported from 0001), so either revision can be read on its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ops_traces",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("app_id", sa.String(36), nullable=False),
        sa.Column("trace_type", sa.String(64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ops_traces")),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_ops_traces_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(op.f("ix_ops_traces_tenant_id"), "ops_traces", ["tenant_id"])
    op.create_index(op.f("ix_ops_traces_app_id"), "ops_traces", ["app_id"])


def downgrade() -> None:
    # Dropping the table drops its indexes and constraints with it.
    op.drop_table("ops_traces")
