"""Initial schema: tenants, apps, datasets, conversations, quotas, workflow runs, task machinery.

Revision ID: 0001
Revises:
Create Date: 2026-11-28

Generated with autogenerate, then tidied: one block per model aggregate, ``id`` first, and names
spelled out as the naming convention in ``relay.models.base`` produces them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def _id(length: int = 36) -> sa.Column[str]:
    return sa.Column("id", sa.String(length), nullable=False)


def _tenant_id(*, nullable: bool = False) -> sa.Column[str]:
    return sa.Column("tenant_id", sa.String(36), nullable=nullable)


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    ]


def _pk(table: str, column: str = "id") -> sa.PrimaryKeyConstraint:
    return sa.PrimaryKeyConstraint(column, name=op.f(f"pk_{table}"))


def _tenant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id"],
        ["tenants.id"],
        name=op.f(f"fk_{table}_tenant_id_tenants"),
        ondelete="CASCADE",
    )


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}"), ondelete="CASCADE"
    )


def _unique(table: str, *columns: str) -> sa.UniqueConstraint:
    return sa.UniqueConstraint(*columns, name=op.f(f"uq_{table}_{'_'.join(columns)}"))


def _index(table: str, *columns: str) -> None:
    op.create_index(op.f(f"ix_{table}_{'_'.join(columns)}"), table, list(columns))


def upgrade() -> None:
    # -- tenant -----------------------------------------------------------------------------
    op.create_table(
        "tenants",
        _id(),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("plan", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        *_timestamps(),
        _pk("tenants"),
        sa.CheckConstraint(
            "plan IN ('sandbox', 'professional', 'team', 'enterprise')",
            name=op.f("ck_tenants_plan"),
        ),
    )
    op.create_table(
        "accounts",
        _id(),
        _tenant_id(),
        sa.Column("email", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        *_timestamps(),
        _pk("accounts"),
        _tenant_fk("accounts"),
        _unique("accounts", "tenant_id", "email"),
    )
    _index("accounts", "tenant_id")
    op.create_table(
        "api_keys",
        _id(),
        _tenant_id(),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("key_prefix", sa.String(16), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("last_used_at", TZ, nullable=True),
        sa.Column("revoked_at", TZ, nullable=True),
        _pk("api_keys"),
        _tenant_fk("api_keys"),
        _unique("api_keys", "key_hash"),
    )
    _index("api_keys", "tenant_id")

    # -- app --------------------------------------------------------------------------------
    op.create_table(
        "apps",
        _id(),
        _tenant_id(),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("mode", sa.String(32), nullable=False),
        sa.Column("model_config", sa.JSON(), nullable=True),
        sa.Column("draft_workflow", sa.JSON(), nullable=True),
        sa.Column("published_workflow", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        *_timestamps(),
        _pk("apps"),
        _tenant_fk("apps"),
    )
    _index("apps", "tenant_id")
    op.create_table(
        "installed_apps",
        _id(),
        _tenant_id(),
        sa.Column("app_id", sa.String(36), nullable=False),
        _pk("installed_apps"),
        _tenant_fk("installed_apps"),
        _fk("installed_apps", "app_id", "apps"),
        _unique("installed_apps", "tenant_id", "app_id"),
    )
    _index("installed_apps", "tenant_id")
    _index("installed_apps", "app_id")
    op.create_table(
        "sites",
        _id(),
        _tenant_id(),
        sa.Column("app_id", sa.String(36), nullable=False),
        sa.Column("code", sa.String(16), nullable=False),
        sa.Column("title", sa.String(255), nullable=False),
        _pk("sites"),
        _tenant_fk("sites"),
        _fk("sites", "app_id", "apps"),
        _unique("sites", "app_id"),
        _unique("sites", "code"),
    )
    _index("sites", "tenant_id")
    op.create_table(
        "app_dataset_joins",
        _id(),
        _tenant_id(),
        sa.Column("app_id", sa.String(36), nullable=False),
        sa.Column("dataset_id", sa.String(36), nullable=False),
        _pk("app_dataset_joins"),
        _tenant_fk("app_dataset_joins"),
        _unique("app_dataset_joins", "app_id", "dataset_id"),
    )
    _index("app_dataset_joins", "tenant_id")
    _index("app_dataset_joins", "dataset_id")

    # -- dataset ----------------------------------------------------------------------------
    op.create_table(
        "datasets",
        _id(),
        _tenant_id(),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("indexing_technique", sa.String(32), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        *_timestamps(),
        _pk("datasets"),
        _tenant_fk("datasets"),
    )
    _index("datasets", "tenant_id")
    op.create_table(
        "documents",
        _id(),
        _tenant_id(),
        sa.Column("dataset_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("data_source_type", sa.String(32), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("indexing_status", sa.String(32), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("word_count", sa.Integer(), nullable=False),
        sa.Column("tokens", sa.Integer(), nullable=False),
        sa.Column("processing_started_at", TZ, nullable=True),
        sa.Column("completed_at", TZ, nullable=True),
        *_timestamps(),
        _pk("documents"),
        _tenant_fk("documents"),
        _fk("documents", "dataset_id", "datasets"),
    )
    _index("documents", "tenant_id")
    _index("documents", "dataset_id")
    _index("documents", "indexing_status")
    op.create_table(
        "document_segments",
        _id(),
        _tenant_id(),
        sa.Column("dataset_id", sa.String(36), nullable=False),
        sa.Column("document_id", sa.String(36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("word_count", sa.Integer(), nullable=False),
        sa.Column("tokens", sa.Integer(), nullable=False),
        sa.Column("keywords", sa.JSON(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        *_timestamps(),
        _pk("document_segments"),
        _tenant_fk("document_segments"),
        _fk("document_segments", "document_id", "documents"),
        _unique("document_segments", "document_id", "position"),
    )
    _index("document_segments", "tenant_id")
    _index("document_segments", "dataset_id")

    # -- conversation -----------------------------------------------------------------------
    op.create_table(
        "conversations",
        _id(),
        _tenant_id(),
        sa.Column("app_id", sa.String(36), nullable=False),
        sa.Column("from_end_user_id", sa.String(36), nullable=True),
        sa.Column("from_account_id", sa.String(36), nullable=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        *_timestamps(),
        _pk("conversations"),
        _tenant_fk("conversations"),
    )
    _index("conversations", "tenant_id")
    _index("conversations", "app_id")
    op.create_table(
        "messages",
        _id(),
        _tenant_id(),
        sa.Column("app_id", sa.String(36), nullable=False),
        sa.Column("conversation_id", sa.String(36), nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("message_tokens", sa.Integer(), nullable=False),
        sa.Column("answer_tokens", sa.Integer(), nullable=False),
        sa.Column("total_price", sa.Numeric(10, 7), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("workflow_run_id", sa.String(36), nullable=True),
        *_timestamps(),
        _pk("messages"),
        _tenant_fk("messages"),
        _fk("messages", "conversation_id", "conversations"),
    )
    _index("messages", "tenant_id")
    _index("messages", "app_id")
    _index("messages", "conversation_id")
    _index("messages", "created_at")

    # -- quota ------------------------------------------------------------------------------
    op.create_table(
        "provider_quotas",
        _id(),
        _tenant_id(),
        sa.Column("provider", sa.String(255), nullable=False),
        sa.Column("quota_type", sa.String(32), nullable=False),
        sa.Column("quota_limit", sa.BigInteger(), nullable=False),
        sa.Column("quota_used", sa.BigInteger(), server_default="0", nullable=False),
        *_timestamps(),
        _pk("provider_quotas"),
        _tenant_fk("provider_quotas"),
        _unique("provider_quotas", "tenant_id", "provider", "quota_type"),
        sa.CheckConstraint(
            "quota_used >= 0", name=op.f("ck_provider_quotas_quota_used_non_negative")
        ),
    )
    _index("provider_quotas", "tenant_id")

    # -- workflow run -----------------------------------------------------------------------
    op.create_table(
        "workflow_runs",
        _id(),
        _tenant_id(),
        sa.Column("app_id", sa.String(36), nullable=False),
        sa.Column("triggered_from", sa.String(32), nullable=False),
        sa.Column("version", sa.String(255), nullable=False),
        sa.Column("graph", sa.JSON(), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("outputs", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("elapsed_time", sa.Float(), nullable=False),
        sa.Column("total_tokens", sa.BigInteger(), nullable=False),
        sa.Column("total_steps", sa.Integer(), nullable=False),
        sa.Column("exceptions_count", sa.Integer(), nullable=False),
        sa.Column("created_by_role", sa.String(32), nullable=False),
        sa.Column("created_by", sa.String(36), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("finished_at", TZ, nullable=True),
        _pk("workflow_runs"),
        _tenant_fk("workflow_runs"),
    )
    _index("workflow_runs", "tenant_id")
    _index("workflow_runs", "app_id")
    _index("workflow_runs", "created_at")
    op.create_table(
        "workflow_node_executions",
        _id(),
        _tenant_id(),
        sa.Column("app_id", sa.String(36), nullable=False),
        sa.Column("workflow_run_id", sa.String(36), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("node_execution_id", sa.String(255), nullable=True),
        sa.Column("node_id", sa.String(255), nullable=False),
        sa.Column("node_type", sa.String(255), nullable=False),
        sa.Column("title", sa.String(255), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=True),
        sa.Column("process_data", sa.JSON(), nullable=True),
        sa.Column("outputs", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("elapsed_time", sa.Float(), nullable=False),
        sa.Column("execution_metadata", sa.JSON(), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("finished_at", TZ, nullable=True),
        _pk("workflow_node_executions"),
        _tenant_fk("workflow_node_executions"),
        _fk("workflow_node_executions", "workflow_run_id", "workflow_runs"),
    )
    _index("workflow_node_executions", "tenant_id")
    _index("workflow_node_executions", "workflow_run_id")

    # -- task machinery (system-owned: tenant_id nullable, no foreign key) --------------------
    op.create_table(
        "task_records",
        _id(64),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("queue", sa.String(128), nullable=False),
        _tenant_id(nullable=True),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("kwargs", sa.JSON(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=True),
        sa.Column("idempotency_key", sa.String(128), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(255), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("traceback", sa.Text(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("enqueued_at", TZ, nullable=False),
        sa.Column("started_at", TZ, nullable=True),
        sa.Column("finished_at", TZ, nullable=True),
        sa.Column("heartbeat_at", TZ, nullable=True),
        sa.Column("updated_at", TZ, nullable=False),
        _pk("task_records"),
    )
    _index("task_records", "idempotency_key")
    _index("task_records", "tenant_id")
    _index("task_records", "name")
    _index("task_records", "status")
    _index("task_records", "enqueued_at")
    op.create_table(
        "dead_letters",
        _id(),
        sa.Column("task_id", sa.String(64), nullable=False),
        sa.Column("task_name", sa.String(255), nullable=False),
        sa.Column("queue", sa.String(128), nullable=False),
        _tenant_id(nullable=True),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("kwargs", sa.JSON(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("traceback", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("replayed_at", TZ, nullable=True),
        sa.Column("replayed_task_id", sa.String(64), nullable=True),
        sa.Column("replay_of", sa.String(36), nullable=True),
        _pk("dead_letters"),
        sa.ForeignKeyConstraint(
            ["replay_of"],
            ["dead_letters.id"],
            name=op.f("fk_dead_letters_replay_of_dead_letters"),
            ondelete="SET NULL",
        ),
    )
    _index("dead_letters", "tenant_id")
    _index("dead_letters", "task_id")
    _index("dead_letters", "created_at")
    op.create_table(
        "outbox_messages",
        _id(),
        _tenant_id(nullable=True),
        sa.Column("task_name", sa.String(255), nullable=False),
        sa.Column("queue", sa.String(128), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("kwargs", sa.JSON(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("sent_at", TZ, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        _pk("outbox_messages"),
        _unique("outbox_messages", "idempotency_key"),
    )
    _index("outbox_messages", "tenant_id")
    _index("outbox_messages", "status", "created_at")
    op.create_table(
        "processed_keys",
        sa.Column("idempotency_key", sa.String(128), nullable=False),
        sa.Column("task_name", sa.String(255), nullable=False),
        sa.Column("processed_at", TZ, nullable=False),
        _pk("processed_keys", "idempotency_key"),
    )
    _index("processed_keys", "processed_at")


# Children before parents; dropping a table drops its indexes and constraints with it.
_TABLES_TOP_DOWN = (
    "tenants",
    "accounts",
    "api_keys",
    "apps",
    "installed_apps",
    "sites",
    "app_dataset_joins",
    "datasets",
    "documents",
    "document_segments",
    "conversations",
    "messages",
    "provider_quotas",
    "workflow_runs",
    "workflow_node_executions",
    "task_records",
    "dead_letters",
    "outbox_messages",
    "processed_keys",
)


def downgrade() -> None:
    for table in reversed(_TABLES_TOP_DOWN):
        op.drop_table(table)
