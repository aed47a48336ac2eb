"""Diagnostic task round trip: enqueue ``relay.ping`` and read its result back."""

from __future__ import annotations

import uuid
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from celery.exceptions import TimeoutError as ResultTimeout
from celery.result import AsyncResult

from relay import catalog
from relay.errors import BadRequest, NotFound
from relay.runtime import Runtime

_ISSUED = "relay:ping:issued:"


@dataclass(frozen=True)
class TaskView:
    """What a caller may see of a task."""

    id: str
    state: str
    result: Any = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "state": self.state, "result": self.result, "error": self.error}


class TaskService:
    """Enqueue ping tasks and fetch their results."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def enqueue_ping(self, message: str) -> str:
        """Send ``relay.ping`` to a worker; returns the task id."""
        if len(message) > 1000:
            raise BadRequest("message must be at most 1000 characters")
        task_id = str(uuid.uuid4())
        # Remember the id first: a result may arrive before send_task returns.
        self.runtime.redis.set(
            _ISSUED + task_id, "1", ex=self.runtime.settings.celery.result_expires
        )
        self.runtime.celery.send_task(catalog.PING.name, args=[message], task_id=task_id)
        return task_id

    def get(self, task_id: str, wait: float = 0.0) -> TaskView:
        """The task's state, optionally waiting up to ``wait`` seconds for it to finish."""
        try:
            uuid.UUID(task_id)
        except ValueError:
            raise BadRequest("task id must be a UUID", details={"task_id": task_id}) from None
        if not (0 <= wait <= 30):
            raise BadRequest("wait must be between 0 and 30 seconds")
        if not self.runtime.redis.exists(_ISSUED + task_id):
            raise NotFound(f"no task {task_id}")
        result = AsyncResult(task_id, app=self.runtime.celery)
        if wait and not result.ready():
            with suppress(ResultTimeout):
                result.get(timeout=wait, propagate=False)
        if result.failed():
            return TaskView(task_id, result.state, error=repr(result.result))
        return TaskView(task_id, result.state, result.result if result.ready() else None)
