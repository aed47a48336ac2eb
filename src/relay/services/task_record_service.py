"""Lists of task records (what ``RelayTask`` wrote about each task), newest first, paginated.

Tenant-scoped for the API (a tenant sees the tasks that ran for it); the CLI may list every
task. Arguments, headers, results and tracebacks are left out: they can carry what a tenant sent
and are for the dead-letter tools, not for a list.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import select

from relay.models.task_record import TaskRecord, TaskStatus
from relay.runtime import Runtime
from relay.services.pagination import Page, PageParams, paginate


class TaskFilter(PageParams):
    """Which task records to list (every filter optional) and which page."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = Field(
        None, max_length=255, description="Only tasks of this name, e.g. relay.workflow.run"
    )
    status: TaskStatus | None = Field(None, description="Only tasks in this state")
    enqueued_after: AwareDatetime | None = Field(
        None, description="Only tasks enqueued at or after this time (ISO 8601 with offset)"
    )
    enqueued_before: AwareDatetime | None = Field(
        None, description="Only tasks enqueued before this time (ISO 8601 with offset)"
    )


class TaskRecordView(BaseModel):
    """A task as listed."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    queue: str
    tenant_id: str | None
    status: str
    attempts: int
    worker: str | None
    error: str | None
    enqueued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class TaskRecordPage(Page[TaskRecordView]):
    """A page of task records."""


def _views(rows: Sequence[TaskRecord]) -> list[TaskRecordView]:
    return [
        TaskRecordView(
            id=row.id,
            name=row.name,
            queue=row.queue,
            tenant_id=row.tenant_id,
            status=row.status,
            attempts=row.attempts,
            worker=row.worker,
            # The first line: an error's message, not a dump of what the task carried.
            error=row.error.splitlines()[0][:500] if row.error else None,
            enqueued_at=row.enqueued_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
        )
        for row in rows
    ]


class TaskRecordService:
    """Reads lists of task records."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def list_records(self, tenant_id: str | None, query: TaskFilter) -> TaskRecordPage:
        """Records matching ``query``, newest first; only ``tenant_id``'s unless it is None."""
        conditions: list[Any] = []
        if tenant_id is not None:
            conditions.append(TaskRecord.tenant_id == tenant_id)
        if query.name is not None:
            conditions.append(TaskRecord.name == query.name)
        if query.status is not None:
            conditions.append(TaskRecord.status == query.status.value)
        if query.enqueued_after is not None:
            conditions.append(TaskRecord.enqueued_at >= query.enqueued_after)
        if query.enqueued_before is not None:
            conditions.append(TaskRecord.enqueued_at < query.enqueued_before)
        statement = (
            select(TaskRecord)
            .where(*conditions)
            .order_by(TaskRecord.enqueued_at.desc(), TaskRecord.id.desc())
        )
        with self.runtime.db.session() as session:
            return paginate(session, statement, query, _views, TaskRecordPage)
