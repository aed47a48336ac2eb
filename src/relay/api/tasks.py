"""Diagnostic task endpoints: ``POST /v1/ping-task`` and ``GET /v1/tasks/<id>``."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request
from pydantic import BaseModel, ConfigDict, Field

from relay.services.task_service import TaskService

tasks = Blueprint("tasks", __name__)


class PingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message: str = Field("ping", max_length=1000)


def _service() -> TaskService:
    return TaskService(current_app.extensions["relay"])


@tasks.post("/ping-task")
def ping_task() -> tuple[Response, int]:
    """Enqueue ``relay.ping``; the answer names the task to poll."""
    body = PingRequest.model_validate(request.get_json(silent=True) or {})
    task_id = _service().enqueue_ping(body.message)
    return jsonify({"task_id": task_id, "url": f"/v1/tasks/{task_id}"}), 202


@tasks.get("/tasks/<task_id>")
def get_task(task_id: str) -> Response:
    """State and result of a task; ``?wait=N`` long-polls up to N seconds."""
    try:
        wait = float(request.args.get("wait", "0"))
    except ValueError:
        wait = -1.0  # rejected by the service with a clear message
    return jsonify(_service().get(task_id, wait=wait).as_dict())
