"""Diagnostic task round trip: enqueue ``relay.ping`` and read its result back.

Both calls act for the tenant of the caller's API key: a ping is admitted against the tenant's
submission bucket like any other enqueue (429 with Retry-After, nothing sent), carries the
tenant in its message headers, and its result is readable by that tenant only. A task of another
tenant answers exactly like an id that was never issued.
"""

from __future__ import annotations

import uuid
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from celery.exceptions import TimeoutError as ResultTimeout
from celery.result import AsyncResult
from sqlalchemy import select

from relay import catalog
from relay.config import Plan
from relay.errors import BadRequest, NotFound
from relay.models import Tenant
from relay.runtime import Runtime
from relay.worker.task import TENANT_HEADER

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
    """Enqueue ping tasks and fetch their results, for one tenant at a time."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def _plan(self, tenant_id: str) -> Plan:
        with self.runtime.db.session() as session:
            plan = session.scalar(select(Tenant.plan).where(Tenant.id == tenant_id))
        return Plan(plan or Plan.SANDBOX)

    def enqueue_ping(self, tenant_id: str, message: str) -> str:
        """Send ``relay.ping`` to a worker for the tenant; returns the task id."""
        if len(message) > 1000:
            raise BadRequest("message must be at most 1000 characters")
        self.runtime.admission.check_submission(tenant_id, self._plan(tenant_id)).enforce()
        task_id = str(uuid.uuid4())
        # Remember the id and its tenant first: a result may arrive before send_task returns.
        self.runtime.redis.set(
            _ISSUED + task_id, tenant_id, ex=self.runtime.settings.celery.result_expires
        )
        self.runtime.celery.send_task(
            catalog.PING.name, args=[message], task_id=task_id, headers={TENANT_HEADER: tenant_id}
        )
        return task_id

    def get(self, tenant_id: str, task_id: str, wait: float = 0.0) -> TaskView:
        """The tenant's task, optionally waiting up to ``wait`` seconds for it to finish."""
        try:
            uuid.UUID(task_id)
        except ValueError:
            raise BadRequest("task id must be a UUID", details={"task_id": task_id}) from None
        if not (0 <= wait <= 30):
            raise BadRequest("wait must be between 0 and 30 seconds")
        owner = self.runtime.redis.get(_ISSUED + task_id)
        if isinstance(owner, bytes):
            owner = owner.decode()
        if owner != tenant_id:
            # Another tenant's task is as unknown as one never issued.
            raise NotFound("task not found")
        result = AsyncResult(task_id, app=self.runtime.celery)
        if wait and not result.ready():
            with suppress(ResultTimeout):
                result.get(timeout=wait, propagate=False)
        if result.failed():
            return TaskView(task_id, result.state, error=repr(result.result))
        return TaskView(task_id, result.state, result.result if result.ready() else None)
