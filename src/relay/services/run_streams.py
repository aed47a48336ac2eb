"""The streaming side of workflow runs, shared by the API services, the run task and the reaper.

``RunJob`` is what the service hands to the run task; ``end_with_error`` writes a run's final
error; ``fail_lost_runs`` ends runs whose worker is gone. The channel and control are the
runtime's ``streams`` (``relay.streaming.RunStreams``).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import update

from relay import catalog
from relay.models import WorkflowRun, WorkflowRunStatus, utcnow
from relay.runtime import Runtime
from relay.streaming import ErrorEvent, InvokeFrom

log = logging.getLogger(__name__)

RUN_TASK = catalog.RUN_WORKFLOW.name
WORKER_LOST = "worker_lost"
_END_USER_NAMESPACE = uuid.UUID("6f1d9a52-3c1e-4b8a-9a57-7d0c2f0e9b11")


def end_user_id(tenant_id: str, user: str) -> str:
    """The id of the end user ``user`` (the API caller's own identifier) within a tenant.

    Deterministic, so the same ``user`` string always maps to the same owner, and 36 characters
    whatever the caller sends (Dify keeps an EndUser row; relay derives the id instead).
    """
    return str(uuid.uuid5(_END_USER_NAMESPACE, f"{tenant_id}:{user}"))


class RunJob(BaseModel):
    """The run task's instructions (JSON, travels in the message)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    tenant_id: str = Field(min_length=1, max_length=36)
    app_id: str = Field(min_length=1, max_length=36)
    mode: str = "workflow"
    user_id: str = Field(min_length=1, max_length=36)
    invoke_from: InvokeFrom = InvokeFrom.SERVICE_API
    query: str | None = None
    conversation_id: str | None = None
    message_id: str | None = None


def fail_run(runtime: Runtime, run_id: str, error: str) -> bool:
    """Mark a still-running run failed (never a finished one); True when it changed."""
    with runtime.db.transaction() as session:
        result: Any = session.execute(
            update(WorkflowRun)
            .where(WorkflowRun.id == run_id, WorkflowRun.status == WorkflowRunStatus.RUNNING)
            .values(status=WorkflowRunStatus.FAILED, error=error, finished_at=utcnow())
        )
        return bool(result.rowcount)


def end_with_error(runtime: Runtime, run_id: str, code: str, message: str) -> bool:
    """Fail the run record, then write a final error event (unless the run has one already).

    The record goes first so that a client seeing the terminal event reads a final record.
    Returns True when this call wrote the terminal event.
    """
    streams = runtime.streams
    fail_run(runtime, run_id, message)
    event = ErrorEvent(code=code, message=message)
    written = streams.channel.append(run_id, event.event.value, event.model_dump_json(), final=True)
    streams.control.release(run_id, "finished", streams.config.retention)
    return written is not None


def fail_lost_runs(runtime: Runtime, batch: int = 200) -> int:
    """End runs whose worker stopped beating (killed, machine gone); returns how many.

    Each gets a final ``error`` event (``worker_lost``) in its stream and a failed record; a run
    whose stream has a final event already is only taken off the list of live runs.
    """
    streams = runtime.streams
    lost_after = runtime.settings.streaming.worker_lost_after
    ended = 0
    for run_id in streams.control.stale(lost_after, batch):
        message = f"the worker running this run stopped (no liveness beat for {lost_after:g}s)"
        if end_with_error(runtime, run_id, WORKER_LOST, message):
            ended += 1
            log.warning(
                "workflow run lost its worker",
                extra={"action": "workflow_run.worker_lost", "run_id": run_id},
            )
    return ended
