"""Task records, heartbeats and dead letters of every execution (a task chain middleware).

``TaskLifecycle`` is created once per runtime and reports each execution: RECEIVED when a worker
takes a message off its queue, STARTED (with a heartbeat while running), then SUCCESS, RETRY or
DEAD. A DEAD execution is stored as a dead letter with its arguments, headers, error and
traceback. The retry decision itself is the ``RetryPolicy`` middleware's.
"""

from __future__ import annotations

import json
import logging
import threading
import traceback as tb
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from relay.adapters.sql import Database
from relay.background import Background, Batcher
from relay.events.outbox import Outbox
from relay.models import TaskStatus, utcnow
from relay.resilience.outages import is_outage
from relay.retry import INFRASTRUCTURE_POLICY, RetryDecision, RetryPolicy, Verdict
from relay.worker.deadletter import DeadLetters
from relay.worker.middleware import Proceed, TaskCall, TaskMiddleware
from relay.worker.records import RecordWriter

log = logging.getLogger(__name__)


def identity(call: TaskCall) -> dict[str, Any]:
    """The record fields that say which task and attempt ``call`` is."""
    return {
        "name": call.name,
        "queue": call.queue,
        "tenant_id": call.tenant_id,
        "args": call.args,
        "kwargs": call.kwargs,
        "headers": call.headers,
        "idempotency_key": call.idempotency_key,
        "attempts": call.attempt,
        "worker": call.worker,
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


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


class TaskLifecycle(TaskMiddleware):
    """Per-runtime bookkeeping of task executions (a middleware on the task chain)."""

    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        *,
        heartbeat_interval: float = 10.0,
        background: Background | None = None,
    ) -> None:
        background = background if background is not None else Background()
        self.records = RecordWriter(db, background=background)
        self.dead_letters = DeadLetters(db, outbox)
        self.heartbeat_interval = heartbeat_interval
        self._running: dict[str, TaskCall] = {}
        self._lock = threading.Lock()
        # Re-announces every running attempt; a run without heartbeats is stranded.
        self._beats: Batcher[str, bool] = Batcher(
            "task-heartbeat", self._beat, interval=heartbeat_interval, background=background
        )

    # --- transitions ----------------------------------------------------------------------------

    def received(self, *, task_id: str, name: str, queue: str, attempt: int, worker: str) -> None:
        """The worker took the message off its queue (recorded from the worker's main process).

        Buffered like every transition; ``delivered`` withdraws it when the delivery ends before
        it was written, so a short task's record is written once, by the pool process that ran
        it, and RECEIVED reaches the table only for messages that wait or run a while.
        """
        self.records.record(
            task_id,
            name=name,
            queue=queue,
            attempts=attempt,
            worker=worker,
            status=TaskStatus.RECEIVED,
            heartbeat_at=utcnow(),
        )

    def delivered(self, task_id: str) -> None:
        """The worker's main process saw the delivery of ``task_id`` end (whatever its outcome,
        which the pool process records): its buffered RECEIVED is not worth a write any more."""
        self.records.withdraw(task_id)

    def around(self, call: TaskCall, proceed: Proceed) -> Any:
        """Record STARTED, then run. Registered inside the fair lease: a copy the scheduler
        drops (stale, or a retry sent back to the fair order) never ran, and leaves the task's
        record to the copy that does run (a STARTED left behind would look like a lost worker).
        """
        now = utcnow()
        self.records.record(
            call.task_id,
            **identity(call),
            status=TaskStatus.STARTED,
            started_at=now,
            heartbeat_at=now,
            finished_at=None,
            error=None,
            traceback=None,
        )
        with self._lock:
            self._running[call.task_id] = call
        self._beats.add("tick", True)
        log.info("task started", extra=_log_fields(call, "task.started"))
        return proceed()

    def on_success(self, call: TaskCall, result: Any) -> None:
        self._finish(call)
        self.records.record(
            call.task_id,
            **identity(call),
            status=TaskStatus.SUCCESS,
            finished_at=utcnow(),
            result=_jsonable(result),
        )
        log.info(
            "task succeeded",
            extra={**_log_fields(call, "task.succeeded"), "seconds": call.elapsed()},
        )

    def on_retry(self, call: TaskCall, error: BaseException, decision: RetryDecision) -> None:
        self._failed(call, error, decision, TaskStatus.RETRY)

    def on_dead(self, call: TaskCall, error: BaseException, decision: RetryDecision) -> None:
        # A failed outcome (e.g. a workflow run whose graph failed) ends FAILURE, not buried.
        failed = decision.verdict is Verdict.FAILED
        self._failed(call, error, decision, TaskStatus.FAILURE if failed else TaskStatus.DEAD)

    def on_abandon(self, call: TaskCall, reason: BaseException) -> None:
        """The attempt ended without an outcome of its own (a self-retry, a dropped copy)."""
        self._finish(call)

    def _failed(
        self, call: TaskCall, error: BaseException, decision: RetryDecision, status: TaskStatus
    ) -> None:
        self._finish(call)
        message = f"{type(error).__name__}: {error}"
        trace = "".join(tb.format_exception(error))
        fields: dict[str, Any] = {"status": status, "error": message[:10_000], "traceback": trace}
        if status is not TaskStatus.RETRY:
            fields["finished_at"] = utcnow()
        if status is TaskStatus.DEAD:
            self.dead_letters.bury(
                task_id=call.task_id,
                task_name=call.name,
                queue=call.queue,
                tenant_id=call.tenant_id,
                args=[_jsonable(a) for a in call.args],
                kwargs={k: _jsonable(v) for k, v in call.kwargs.items()},
                headers=call.headers,
                reason=decision.reason,
                error=message,
                traceback=trace,
                attempts=call.attempt,
            )
        self.records.record(call.task_id, **identity(call), **fields)
        level = logging.WARNING if status is TaskStatus.RETRY else logging.ERROR
        log.log(
            level,
            f"task {status.lower()}: {type(error).__name__}",
            extra={
                **_log_fields(call, f"task.{status.lower()}"),
                "delay": decision.delay,
                "reason": decision.reason,
            },
        )

    def flush(self) -> None:
        """Write buffered record transitions now."""
        self.records.flush()

    # --- heartbeats -----------------------------------------------------------------------------

    def _finish(self, call: TaskCall) -> None:
        with self._lock:
            self._running.pop(call.task_id, None)

    def _beat(self, _: dict[str, bool]) -> None:
        with self._lock:
            running = list(self._running.values())
        now = utcnow()
        for call in running:
            self.records.record(
                call.task_id, **identity(call), status=TaskStatus.STARTED, heartbeat_at=now
            )
        if running:
            # Keep ticking while anything runs (the batcher only wakes for pending keys).
            self._beats.add("tick", True)

    def running(self) -> list[str]:
        """Task ids running in this process."""
        with self._lock:
            return list(self._running)


class RetryPolicyMiddleware(TaskMiddleware):
    """Judges a failure by the task's ``RetryPolicy`` (out of time: dead, never retried).

    An outage of Redis, the broker or the database is retried on ``INFRASTRUCTURE_POLICY``
    (backoff up to minutes) by every task that retries at all: a restart must not burn a
    task's attempts in seconds. Deliveries that died with their worker end as ``worker_lost``.
    """

    def decide(self, call: TaskCall, error: BaseException) -> RetryDecision:
        if ran_out_of_time(error):
            # Out of time: the task had its chance to clean up; running it again would too.
            return RetryDecision(Verdict.DEAD, reason="time_limit")
        reason = getattr(error, "dead_reason", None)
        if isinstance(reason, str):
            # Errors that name their own end (deliveries lost with workers, a rejected message).
            return RetryDecision(Verdict.DEAD, reason=reason)
        policy: RetryPolicy = call.task.retry_policy or call.task.spec.retry
        if policy.max_attempts > 1 and is_outage(error):
            return INFRASTRUCTURE_POLICY.decide(error, call.attempt)
        return policy.decide(error, call.attempt)


def _log_fields(call: TaskCall, action: str) -> dict[str, Any]:
    return {
        "action": action,
        "task_id": call.task_id,
        "task": call.name,
        "queue": call.queue,
        "tenant_id": call.tenant_id,
        "attempt": call.attempt,
    }
