"""Tool providers tenants set up: encrypted credentials, OpenAPI schemas, MCP servers.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

Self-contained (no helpers imported from earlier revisions), so it can be read on its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tool_providers",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("provider_type", sa.String(16), nullable=False),
        sa.Column("provider_id", sa.String(255), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("credentials", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tool_providers")),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_tool_providers_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "tenant_id",
            "provider_type",
            "provider_id",
            name=op.f("uq_tool_providers_tenant_id_provider_type_provider_id"),
        ),
    )
    op.create_index(op.f("ix_tool_providers_tenant_id"), "tool_providers", ["tenant_id"])


def downgrade() -> None:
    op.drop_table("tool_providers")
