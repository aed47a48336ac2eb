"""What happens around every task run: records, heartbeats, retry decisions, dead letters, metrics.

``TaskLifecycle`` is created once per runtime. ``RelayTask.__call__`` reports each run to it:
``started`` (record STARTED, heartbeat while running), then ``succeeded`` or ``failed``. A failure
is judged by the task's ``RetryPolicy``: RETRY (the task re-publishes itself with the policy's
delay) or DEAD (stored as a dead letter with arguments, headers, error and traceback).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback as tb
from dataclasses import dataclass, field
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from relay.events.outbox import Outbox
from relay.extensions.batching import Batcher
from relay.extensions.ext_db import Database
from relay.models import TaskStatus, utcnow
from relay.monitoring.task_metrics import TaskStats
from relay.tasks.deadletter import DeadLetters
from relay.tasks.records import RecordWriter
from relay.tasks.retry import RetryDecision, RetryPolicy, Verdict

log = logging.getLogger(__name__)

# Headers Celery sets itself; the rest are relay's (idempotency key, tenant, replay link...).
_CELERY_HEADERS = frozenset(
    {"lang", "task", "id", "shadow", "eta", "expires", "group", "group_index", "retries",
     "timelimit", "root_id", "parent_id", "argsrepr", "kwargsrepr", "origin", "ignore_result",
     "replaced_task_nesting", "stamped_headers", "stamps"}
)  # fmt: skip


@dataclass
class Run:
    """One running attempt of a task, as the lifecycle knows it."""

    task_id: str
    name: str
    queue: str
    attempt: int
    worker: str
    tenant_id: str | None
    args: list[Any]
    kwargs: dict[str, Any]
    headers: dict[str, Any]
    idempotency_key: str | None
    started: float = field(default_factory=time.perf_counter)

    def identity(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "queue": self.queue,
            "tenant_id": self.tenant_id,
            "args": self.args,
            "kwargs": self.kwargs,
            "headers": self.headers,
            "idempotency_key": self.idempotency_key,
            "attempts": self.attempt,
            "worker": self.worker,
        }


def ran_out_of_time(exc: BaseException) -> bool:
    """Whether ``exc`` is the soft time limit, or an error raised while handling it.

    The limit is an exception raised by a signal wherever the task happens to be; inside a
    database call, the driver's clean-up may fail in turn (psycopg: "cannot exit pipeline mode
    while busy") and that error, with the limit as its context, is what propagates.
    """
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending:
        error = pending.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, SoftTimeLimitExceeded):
            return True
        pending.extend(e for e in (error.__cause__, error.__context__) if e is not None)
    return False


# --- plan limits ---------------------------------------------------------------------------------


def relay_headers(headers: dict[str, Any] | None) -> dict[str, Any]:
    """The message headers relay put there (JSON-safe), without Celery's own."""
    return {k: v for k, v in (headers or {}).items() if k not in _CELERY_HEADERS}


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


class TaskLifecycle:
    """Per-runtime bookkeeping of task runs."""

    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        stats: TaskStats,
        *,
        heartbeat_interval: float = 10.0,
    ) -> None:
        self.records = RecordWriter(db)
        self.dead_letters = DeadLetters(db, outbox)
        self.stats = stats
        self.heartbeat_interval = heartbeat_interval
        self._running: dict[str, Run] = {}
        self._lock = threading.Lock()
        # Re-announces every running attempt; a run without heartbeats is stranded.
        self._beats: Batcher[str, bool] = Batcher(
            "task-heartbeat", self._beat, interval=heartbeat_interval
        )

    # --- transitions ----------------------------------------------------------------------------

    def received(self, *, task_id: str, name: str, queue: str, attempt: int, worker: str) -> None:
        """The worker took the message off its queue (recorded from the worker's main process)."""
        self.records.record(
            task_id,
            name=name,
            queue=queue,
            attempts=attempt,
            worker=worker,
            status=TaskStatus.RECEIVED,
            heartbeat_at=utcnow(),
        )

    def started(self, run: Run) -> None:
        now = utcnow()
        self.records.record(
            run.task_id,
            **run.identity(),
            status=TaskStatus.STARTED,
            started_at=now,
            heartbeat_at=now,
            finished_at=None,
            error=None,
            traceback=None,
        )
        with self._lock:
            self._running[run.task_id] = run
        self._beats.add("tick", True)
        log.info("task started", extra=self._log_fields(run, "task.started"))

    def succeeded(self, run: Run, result: Any) -> None:
        seconds = self._finish(run)
        self.records.record(
            run.task_id,
            **run.identity(),
            status=TaskStatus.SUCCESS,
            finished_at=utcnow(),
            result=_jsonable(result),
        )
        self.stats.count(run.name, run.queue, TaskStatus.SUCCESS)
        self.stats.observe(run.name, run.queue, seconds)
        log.info(
            "task succeeded", extra={**self._log_fields(run, "task.succeeded"), "seconds": seconds}
        )

    def failed(self, run: Run, error: BaseException, policy: RetryPolicy) -> RetryDecision:
        """Record the failure and return the policy's decision (the caller retries on RETRY)."""
        seconds = self._finish(run)
        if ran_out_of_time(error):
            # Out of time: the task had its chance to clean up; running it again would too.
            decision = RetryDecision(Verdict.DEAD, reason="time_limit")
        else:
            decision = policy.decide(error, run.attempt)
        message = f"{type(error).__name__}: {error}"
        trace = "".join(tb.format_exception(error))
        status = TaskStatus.RETRY if decision.verdict is Verdict.RETRY else TaskStatus.DEAD
        fields: dict[str, Any] = {"status": status, "error": message[:10_000], "traceback": trace}
        if status is TaskStatus.DEAD:
            fields["finished_at"] = utcnow()
            self.dead_letters.bury(
                task_id=run.task_id,
                task_name=run.name,
                queue=run.queue,
                tenant_id=run.tenant_id,
                args=[_jsonable(a) for a in run.args],
                kwargs={k: _jsonable(v) for k, v in run.kwargs.items()},
                headers=run.headers,
                reason=decision.reason,
                error=message,
                traceback=trace,
                attempts=run.attempt,
            )
        self.records.record(run.task_id, **run.identity(), **fields)
        self.stats.count(run.name, run.queue, status)
        self.stats.observe(run.name, run.queue, seconds)
        level = logging.WARNING if status is TaskStatus.RETRY else logging.ERROR
        log.log(
            level,
            f"task {status.lower()}: {message}",
            extra={
                **self._log_fields(run, f"task.{status.lower()}"),
                "delay": decision.delay,
                "reason": decision.reason,
            },
        )
        return decision

    def abandoned(self, run: Run) -> None:
        """The attempt ended without an outcome of its own (a self-retry, a dropped copy)."""
        self._finish(run)

    def flush(self) -> None:
        self.records.flush()
        self.stats.flush()

    # --- heartbeats -----------------------------------------------------------------------------

    def _finish(self, run: Run) -> float:
        with self._lock:
            self._running.pop(run.task_id, None)
        return time.perf_counter() - run.started

    def _beat(self, _: dict[str, bool]) -> None:
        with self._lock:
            running = list(self._running.values())
        now = utcnow()
        for run in running:
            self.records.record(
                run.task_id, **run.identity(), status=TaskStatus.STARTED, heartbeat_at=now
            )
        if running:
            # Keep ticking while anything runs (the batcher only wakes for pending keys).
            self._beats.add("tick", True)

    def running(self) -> list[str]:
        """Task ids running in this process."""
        with self._lock:
            return list(self._running)

    @staticmethod
    def _log_fields(run: Run, action: str) -> dict[str, Any]:
        return {
            "action": action,
            "task_id": run.task_id,
            "task": run.name,
            "queue": run.queue,
            "tenant_id": run.tenant_id,
            "attempt": run.attempt,
        }
