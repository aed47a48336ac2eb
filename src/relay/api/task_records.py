"""The calling tenant's task records: ``GET /v1/tasks`` (by name, status and time, paginated)."""

from __future__ import annotations

from flask import Blueprint, Response

from relay.api.auth import current_runtime, tenant_id
from relay.api.body import parse_query, respond
from relay.api.openapi import TENANT, documented
from relay.services.task_record_service import TaskFilter, TaskRecordPage, TaskRecordService

task_records = Blueprint("task_records", __name__)


@task_records.get("/tasks")
@documented(tags=("tasks",), security=TENANT, query=TaskFilter, ok=(200, TaskRecordPage))
def list_task_records() -> tuple[Response, int]:
    """The tenant's tasks, newest first: status, attempts, worker, timings, error.

    Times are ISO 8601 with an offset (``2026-12-03T10:00:00Z``; encode ``+`` as ``%2B``).
    """
    query = parse_query(TaskFilter)
    return respond(TaskRecordService(current_runtime()).list_records(tenant_id(), query))
