"""Apps' own Service API: app API keys, message feedback, uploaded files, conversation inputs.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

Self-contained (no helpers imported from earlier revisions), so it can be read on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}"), ondelete="CASCADE"
    )


def _index(table: str, *columns: str) -> None:
    op.create_index(op.f(f"ix_{table}_{'_'.join(columns)}"), table, list(columns))


def _owned(table: str) -> list[Any]:
    return [
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
        _fk(table, "tenant_id", "tenants"),
    ]


def upgrade() -> None:
    op.create_table(
        "app_api_keys",
        *_owned("app_api_keys"),
        sa.Column("app_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("key_prefix", sa.String(16), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("last_used_at", TZ, nullable=True),
        sa.Column("revoked_at", TZ, nullable=True),
        _fk("app_api_keys", "app_id", "apps"),
        sa.UniqueConstraint("key_hash", name=op.f("uq_app_api_keys_key_hash")),
    )
    _index("app_api_keys", "tenant_id")
    _index("app_api_keys", "app_id")

    op.create_table(
        "message_feedbacks",
        *_owned("message_feedbacks"),
        sa.Column("app_id", sa.String(36), nullable=False),
        sa.Column("conversation_id", sa.String(36), nullable=False),
        sa.Column("message_id", sa.String(36), nullable=False),
        sa.Column("rating", sa.String(16), nullable=False),
        sa.Column("content", sa.Text(), nullable=True),
        sa.Column("from_end_user_id", sa.String(36), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        _fk("message_feedbacks", "message_id", "messages"),
        sa.UniqueConstraint(
            "message_id",
            "from_end_user_id",
            name=op.f("uq_message_feedbacks_message_id_from_end_user_id"),
        ),
    )
    _index("message_feedbacks", "tenant_id")
    _index("message_feedbacks", "app_id")
    _index("message_feedbacks", "message_id")

    op.create_table(
        "upload_files",
        *_owned("upload_files"),
        sa.Column("app_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("extension", sa.String(32), nullable=False),
        sa.Column("mime_type", sa.String(255), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("created_by", sa.String(36), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    _index("upload_files", "tenant_id")
    _index("upload_files", "app_id")

    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("inputs", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("inputs")
    op.drop_table("upload_files")
    op.drop_table("message_feedbacks")
    op.drop_table("app_api_keys")
