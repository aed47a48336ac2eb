"""Document indexing: keyword index, status log, content format and phase timings.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29

Self-contained (no helpers imported from earlier revisions), so it can be read on its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # batch_alter_table: SQLite cannot ALTER most things in place (adding columns it can, but
    # the batch form keeps both dialects on one code path).
    with op.batch_alter_table("documents") as batch:
        batch.add_column(sa.Column("content_format", sa.String(16), nullable=True))
        batch.add_column(sa.Column("indexing_timings", sa.JSON(), nullable=True))

    op.create_table(
        "segment_keywords",
        sa.Column("segment_id", sa.String(36), nullable=False),
        sa.Column("keyword", sa.String(64), nullable=False),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("dataset_id", sa.String(36), nullable=False),
        sa.Column("document_id", sa.String(36), nullable=False),
        sa.PrimaryKeyConstraint("segment_id", "keyword", name=op.f("pk_segment_keywords")),
        sa.ForeignKeyConstraint(
            ["segment_id"],
            ["document_segments.id"],
            name=op.f("fk_segment_keywords_segment_id_document_segments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_segment_keywords_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        op.f("ix_segment_keywords_tenant_id_dataset_id_keyword"),
        "segment_keywords",
        ["tenant_id", "dataset_id", "keyword"],
    )
    op.create_index(op.f("ix_segment_keywords_document_id"), "segment_keywords", ["document_id"])

    op.create_table(
        "document_status_logs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("dataset_id", sa.String(36), nullable=False),
        sa.Column("document_id", sa.String(36), nullable=False),
        sa.Column("from_status", sa.String(32), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_document_status_logs")),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_document_status_logs_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["documents.id"],
            name=op.f("fk_document_status_logs_document_id_documents"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        op.f("ix_document_status_logs_tenant_id"), "document_status_logs", ["tenant_id"]
    )
    op.create_index(
        op.f("ix_document_status_logs_document_id_id"),
        "document_status_logs",
        ["document_id", "id"],
    )


def downgrade() -> None:
    # Dropping a table drops its indexes and constraints with it.
    op.drop_table("document_status_logs")
    op.drop_table("segment_keywords")
    with op.batch_alter_table("documents") as batch:
        batch.drop_column("indexing_timings")
        batch.drop_column("content_format")
