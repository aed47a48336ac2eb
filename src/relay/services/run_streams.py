"""The streaming side of workflow runs, shared by the API services, the run task and the reaper.

``RunStreams`` builds a run's channel, control and queue managers from the runtime; ``RunJob`` is
what the service hands to the run task; ``fail_lost_runs`` ends runs whose worker is gone.
"""

from __future__ import annotations

import logging
import threading
import uuid
import weakref
from dataclasses import dataclass
from typing import Any

import redis
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import update

from relay.extensions.ext_redis import redis_kwargs
from relay.models import WorkflowRun, WorkflowRunStatus, utcnow
from relay.runtime import Runtime
from relay.streaming import (
    AppQueueManager,
    ErrorEvent,
    InvokeFrom,
    QueueConfig,
    RedisRunControl,
    RedisStreamChannel,
)

log = logging.getLogger(__name__)

RUN_TASK = "relay.workflow.run"
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


_LISTENER_CLIENTS: weakref.WeakKeyDictionary[redis.Redis, redis.Redis] = weakref.WeakKeyDictionary()
_LISTENER_LOCK = threading.Lock()


def streams_client(runtime: Runtime) -> redis.Redis:
    """The Redis client of run streams: a pool of its own, one per process client.

    Every open SSE stream holds a connection while its XREAD waits, and a burst of clients
    connecting at once (gevent serves them all concurrently) needs as many for a moment; in a
    blocking pool of their own (``RELAY_STREAMING_MAX_LISTENERS``; a full pool makes callers
    wait, never fail) streams can neither exhaust nor starve the process's main pool. Sentinel
    setups keep the main client (its pool follows failovers).
    """
    settings = runtime.settings
    if settings.redis.sentinels:
        return runtime.redis
    with _LISTENER_LOCK:
        client = _LISTENER_CLIENTS.get(runtime.redis)
        if client is None:
            pool = redis.BlockingConnectionPool.from_url(
                runtime.redis_url,
                max_connections=settings.streaming.max_listeners,
                timeout=settings.redis.socket_timeout,
                **redis_kwargs(settings.redis),
            )
            client = redis.Redis(connection_pool=pool)
            _LISTENER_CLIENTS[runtime.redis] = client
        return client


@dataclass(frozen=True)
class RunStreams:
    """A run's channel, control and queue managers, as configured for this runtime."""

    channel: RedisStreamChannel
    control: RedisRunControl
    config: QueueConfig

    @classmethod
    def of(cls, runtime: Runtime) -> RunStreams:
        """The streams of ``runtime`` (its Redis client and streaming settings)."""
        settings = runtime.settings
        # A blocking read must return before the Redis client's socket timeout fires.
        block = max(0.05, min(1.0, settings.redis.socket_timeout / 2))
        config = QueueConfig.from_settings(settings.streaming, read_block=block)
        client = streams_client(runtime)
        return cls(
            channel=RedisStreamChannel(
                client,
                retention=settings.streaming.retention,
                active_ttl=settings.streaming.ownership_ttl,
            ),
            control=RedisRunControl(client),
            config=config,
        )

    def manager(
        self,
        run_id: str,
        user_id: str,
        invoke_from: InvokeFrom | str = InvokeFrom.SERVICE_API,
        *,
        record_owner: bool = True,
    ) -> AppQueueManager:
        """The queue manager of ``run_id`` for ``user_id``."""
        return AppQueueManager(
            run_id,
            user_id,
            invoke_from,
            channel=self.channel,
            control=self.control,
            config=self.config,
            record_owner=record_owner,
        )


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
    streams = RunStreams.of(runtime)
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
    streams = RunStreams.of(runtime)
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
