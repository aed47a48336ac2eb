"""The workflow run aggregate: one execution of a workflow graph and its node executions."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from relay.models.base import Base, IdMixin, TenantOwned, UTCDateTime, utcnow
from relay.models.tenant import tenant_fk


class WorkflowRunStatus(StrEnum):
    """Outcome of a workflow run (as in Dify)."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PARTIAL_SUCCEEDED = "partial-succeeded"
    STOPPED = "stopped"


class WorkflowRunTriggeredFrom(StrEnum):
    """Where a run was started from."""

    DEBUGGING = "debugging"
    APP_RUN = "app-run"


class CreatorRole(StrEnum):
    """Who started a run: a tenant account or an end user of a published app."""

    ACCOUNT = "account"
    END_USER = "end_user"


class NodeExecutionStatus(StrEnum):
    """Outcome of one node execution."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXCEPTION = "exception"
    RETRY = "retry"


class WorkflowRun(IdMixin, TenantOwned, Base):
    """One run of a workflow: the graph it ran, its inputs and outputs, status and usage."""

    __tablename__ = "workflow_runs"

    tenant_id: Mapped[str] = tenant_fk()
    app_id: Mapped[str] = mapped_column(String(36), nullable=False, index=True)
    triggered_from: Mapped[str] = mapped_column(String(32), nullable=False)
    version: Mapped[str] = mapped_column(String(255), nullable=False)
    graph: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    outputs: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    status: Mapped[str] = mapped_column(
        String(32), nullable=False, default=WorkflowRunStatus.RUNNING
    )
    error: Mapped[str | None] = mapped_column(Text)
    elapsed_time: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    total_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    total_steps: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    exceptions_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_by_role: Mapped[str] = mapped_column(String(32), nullable=False)
    created_by: Mapped[str] = mapped_column(String(36), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=utcnow, index=True
    )
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    def __repr__(self) -> str:
        return f"<WorkflowRun {self.id} app={self.app_id} {self.status}>"


class WorkflowNodeExecution(IdMixin, TenantOwned, Base):
    """One execution of one node within a run; ``index`` orders them within the run."""

    __tablename__ = "workflow_node_executions"

    tenant_id: Mapped[str] = tenant_fk()
    app_id: Mapped[str] = mapped_column(String(36), nullable=False)
    workflow_run_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("workflow_runs.id", ondelete="CASCADE"), nullable=False, index=True
    )
    index: Mapped[int] = mapped_column(Integer, nullable=False)
    node_execution_id: Mapped[str | None] = mapped_column(String(255))
    node_id: Mapped[str] = mapped_column(String(255), nullable=False)
    node_type: Mapped[str] = mapped_column(String(255), nullable=False)
    title: Mapped[str] = mapped_column(String(255), nullable=False)
    inputs: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    process_data: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    outputs: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    status: Mapped[str] = mapped_column(
        String(32), nullable=False, default=NodeExecutionStatus.RUNNING
    )
    error: Mapped[str | None] = mapped_column(Text)
    elapsed_time: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    execution_metadata: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    def __repr__(self) -> str:
        return f"<WorkflowNodeExecution {self.node_id} run={self.workflow_run_id} {self.status}>"
