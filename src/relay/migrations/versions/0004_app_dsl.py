"""Apps keep what a Dify export carries besides the graph: description, features, variables.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

Self-contained (no helpers imported from earlier revisions), so it can be read on its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("apps") as batch:
        batch.add_column(sa.Column("description", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("workflow_features", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("environment_variables", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("conversation_variables", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("apps") as batch:
        batch.drop_column("conversation_variables")
        batch.drop_column("environment_variables")
        batch.drop_column("workflow_features")
        batch.drop_column("description")
