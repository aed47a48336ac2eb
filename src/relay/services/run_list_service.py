"""Lists of a tenant's workflow runs: by app, status, end user and time, newest first, paginated.

A run's detail and events stay owner-scoped (``?user=``); the list is the tenant's view of all
of them, so an operator can find a run without knowing who started it. Each entry names its
end user by id (``created_by``); pass ``user`` to list the runs of one end user.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import select

from relay.models import WorkflowRun, WorkflowRunStatus
from relay.runtime import Runtime
from relay.services.pagination import Page, PageParams, paginate
from relay.services.run_streams import end_user_id

RunStatus = WorkflowRunStatus


class RunFilter(PageParams):
    """Which runs to list (every filter optional) and which page."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    app_id: str | None = Field(None, max_length=64, description="Only runs of this app")
    status: RunStatus | None = Field(None, description="Only runs with this status")
    user: str | None = Field(
        None, min_length=1, max_length=255, description="Only runs of this end user (as sent)"
    )
    created_after: AwareDatetime | None = Field(
        None, description="Only runs created at or after this time (ISO 8601 with offset)"
    )
    created_before: AwareDatetime | None = Field(
        None, description="Only runs created before this time (ISO 8601 with offset)"
    )


class RunSummary(BaseModel):
    """A run as listed: no inputs or outputs (read the run for those)."""

    model_config = ConfigDict(frozen=True)

    id: str
    app_id: str
    status: str
    created_by: str = Field(description="The end user's id (derived from the `user` sent)")
    triggered_from: str
    error: str | None
    elapsed_time: float
    total_tokens: int
    total_steps: int
    created_at: datetime
    finished_at: datetime | None


class RunPage(Page[RunSummary]):
    """A page of runs."""


def _summaries(rows: Sequence[WorkflowRun]) -> list[RunSummary]:
    return [
        RunSummary(
            id=row.id,
            app_id=row.app_id,
            status=row.status,
            created_by=row.created_by,
            triggered_from=row.triggered_from,
            error=row.error,
            elapsed_time=row.elapsed_time,
            total_tokens=row.total_tokens,
            total_steps=row.total_steps,
            created_at=row.created_at,
            finished_at=row.finished_at,
        )
        for row in rows
    ]


class RunListService:
    """Reads lists of a tenant's runs."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def list_runs(self, tenant_id: str, query: RunFilter) -> RunPage:
        """The tenant's runs matching ``query``, newest first."""
        conditions: list[Any] = [WorkflowRun.tenant_id == tenant_id]
        if query.app_id is not None:
            conditions.append(WorkflowRun.app_id == query.app_id)
        if query.status is not None:
            conditions.append(WorkflowRun.status == query.status.value)
        if query.user is not None:
            conditions.append(WorkflowRun.created_by == end_user_id(tenant_id, query.user))
        if query.created_after is not None:
            conditions.append(WorkflowRun.created_at >= query.created_after)
        if query.created_before is not None:
            conditions.append(WorkflowRun.created_at < query.created_before)
        statement = (
            select(WorkflowRun)
            .where(*conditions)
            .order_by(WorkflowRun.created_at.desc(), WorkflowRun.id.desc())
        )
        with self.runtime.db.session() as session:
            return paginate(session, statement, query, _summaries, RunPage)
