"""``AlertDeadTasks``: a task that is dead-lettered (fatal error, attempts used up, arguments that
do not bind) raises an alert, de-duplicated per task type and reason.

A workflow run whose graph failed (``OutcomeFailed``) is an outcome, not a dead letter: no alert.
The alert names the task, its queue, tenant, attempt and the error's type; never its arguments
or the error's text (which may quote them).
"""

from __future__ import annotations

from relay.monitoring.alerts import Alert, AlertManager, Severity
from relay.retry import RetryDecision, Verdict
from relay.worker.middleware import TaskCall, TaskMiddleware


class AlertDeadTasks(TaskMiddleware):
    """Raise ``task.dead:<task>:<reason>`` when a task goes to dead letters."""

    def __init__(self, alerts: AlertManager) -> None:
        self.alerts = alerts

    def on_dead(self, call: TaskCall, error: BaseException, decision: RetryDecision) -> None:
        if decision.verdict is Verdict.FAILED:
            return
        self.alerts.raise_alert(
            Alert(
                f"task.dead:{call.name}:{decision.reason}",
                Severity.ERROR,
                f"task {call.name} was dead-lettered ({decision.reason}): "
                f"{type(error).__name__} after {call.attempt} attempt(s)",
                {
                    "task": call.name,
                    "task_id": call.task_id,
                    "queue": call.queue,
                    "tenant_id": call.tenant_id,
                    "attempt": call.attempt,
                    "reason": decision.reason,
                    "error_type": type(error).__name__,
                },
            )
        )
