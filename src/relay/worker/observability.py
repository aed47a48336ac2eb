"""Task middlewares that let operators see inside tasks: trace spans and error reports.

``Traced``: a message leaves with its producer's trace context in its headers (unless it already
carries one: a message the fair scheduler held, or an outbox row, keeps the context of the span
that produced it); the task body runs in a consumer span that continues that trace.

``ReportFailures``: a task that is dead-lettered, or whose work failed (a workflow run that
ended failed), is reported once with tenant and task tags, never with its arguments.
"""

from __future__ import annotations

from typing import Any

from relay.adapters.tracing import extract, inject, span
from relay.monitoring.errors_reporting import ErrorReporter
from relay.retry import RetryDecision, Verdict
from relay.worker.middleware import OutgoingMessage, Proceed, TaskCall, TaskMiddleware


class Traced(TaskMiddleware):
    """Trace context out with every message, and a span around every execution."""

    def before_publish(self, message: OutgoingMessage) -> None:
        inject(message.headers, replace=False)

    def around(self, call: TaskCall, proceed: Proceed) -> Any:
        attributes = {
            "messaging.system": "celery",
            "messaging.destination.name": call.queue,
            "messaging.message.id": call.task_id,
            "relay.task": call.name,
            "relay.attempt": call.attempt,
            "relay.tenant_id": call.tenant_id,
            "relay.worker": call.worker,
        }
        with span(
            f"run {call.name}", attributes, kind="consumer", parent=extract(call.headers)
        ) as current:
            call.context["span"] = current
            return proceed()


class ReportFailures(TaskMiddleware):
    """Dead-lettered tasks and failed outcomes go to the error reporter."""

    def __init__(self, reporter: ErrorReporter) -> None:
        self.reporter = reporter

    def on_dead(self, call: TaskCall, error: BaseException, decision: RetryDecision) -> None:
        failed = decision.verdict is Verdict.FAILED
        self.reporter.capture(
            error,
            tags={
                "relay.task": call.name,
                "relay.task_id": call.task_id,
                "relay.queue": call.queue,
                "relay.tenant_id": call.tenant_id,
                "relay.attempt": call.attempt,
                "relay.outcome": "failed" if failed else "dead_lettered",
                "relay.reason": decision.reason,
            },
            # One issue per task and outcome, not one per error message.
            fingerprint=[call.name, "failed" if failed else "dead", type(error).__name__],
            level="warning" if failed else "error",
        )
