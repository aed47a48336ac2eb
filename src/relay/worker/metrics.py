"""``TaskMetrics``: counts every task outcome and times every execution (a chain middleware)."""

from __future__ import annotations

from typing import Any

from relay.models import TaskStatus
from relay.monitoring.task_metrics import TaskStats
from relay.retry import RetryDecision, Verdict
from relay.worker.middleware import TaskCall, TaskMiddleware


class TaskMetrics(TaskMiddleware):
    """Feeds ``TaskStats`` (flushed to Redis in batches, exported at scrape time)."""

    def __init__(self, stats: TaskStats) -> None:
        self.stats = stats

    def on_success(self, call: TaskCall, result: Any) -> None:
        self._count(call, TaskStatus.SUCCESS)

    def on_retry(self, call: TaskCall, error: BaseException, decision: RetryDecision) -> None:
        self._count(call, TaskStatus.RETRY)

    def on_dead(self, call: TaskCall, error: BaseException, decision: RetryDecision) -> None:
        failed = decision.verdict is Verdict.FAILED
        self._count(call, TaskStatus.FAILURE if failed else TaskStatus.DEAD)

    def _count(self, call: TaskCall, status: TaskStatus) -> None:
        self.stats.count(call.name, call.queue, status)
        self.stats.observe(call.name, call.queue, call.elapsed())
