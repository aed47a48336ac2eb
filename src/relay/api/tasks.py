"""Diagnostic task endpoints: ``POST /v1/ping-task`` and ``GET /v1/tasks/<id>``.

Both sit behind the tenant's API key (mounted on the tenant blueprint) and see only the
caller's own tasks."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify
from pydantic import BaseModel, ConfigDict, Field

from relay.api.auth import current_runtime, tenant_id
from relay.api.body import parse_body, parse_query
from relay.api.openapi import TENANT, documented
from relay.services.task_service import TaskService

tasks = Blueprint("tasks", __name__)

_TAGS = ("diagnostics",)


class PingRequest(BaseModel):
    """What the ping task should echo."""

    model_config = ConfigDict(extra="forbid")
    message: str = Field("ping", max_length=1000)


class PingAccepted(BaseModel):
    """The enqueued task and where to poll it."""

    task_id: str
    url: str


class TaskWait(BaseModel):
    """How long to long-poll."""

    wait: float = Field(0, ge=0, le=30, description="Seconds to wait for the task to finish")


class TaskState(BaseModel):
    """A task's Celery state, its result once done, its error if it failed."""

    id: str
    state: str
    result: Any = None
    error: str | None = None


def _service() -> TaskService:
    return TaskService(current_runtime())


@tasks.post("/ping-task")
@documented(tags=_TAGS, security=TENANT, json=PingRequest, ok=(202, PingAccepted), errors=(429,))
def ping_task() -> tuple[Response, int]:
    """Enqueue ``relay.ping``; the answer names the task to poll."""
    body = parse_body(PingRequest)
    task_id = _service().enqueue_ping(tenant_id(), body.message)
    return jsonify({"task_id": task_id, "url": f"/v1/tasks/{task_id}"}), 202


@tasks.get("/tasks/<task_id>")
@documented(tags=_TAGS, security=TENANT, query=TaskWait, ok=(200, TaskState), errors=(404,))
def get_task(task_id: str) -> Response:
    """State and result of a task; ``?wait=N`` long-polls up to N seconds."""
    wait = parse_query(TaskWait).wait
    return jsonify(_service().get(tenant_id(), task_id, wait=wait).as_dict())
