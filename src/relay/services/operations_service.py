"""What an operator reads on the dashboard: health, queues, workers, tenants' fairness, tasks.

Every figure comes from the parts that own it (readiness checker, queue monitor, presence, the
fair scheduler's state, task records); this module only gathers and shapes them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select

from relay.config import Plan
from relay.errors import NotFound
from relay.models import Tenant, utcnow
from relay.models.task_record import TaskRecord, TaskStatus
from relay.monitoring.alerts import Alert
from relay.monitoring.levels import Readiness
from relay.monitoring.presence import heartbeats
from relay.monitoring.queues import QueueStatus, QueueThresholds, evaluate
from relay.runtime import Runtime
from relay.scheduling.metrics import tenant_snapshot
from relay.scheduling.tenant_queue import WaitHistogram
from relay.services.task_record_service import TaskRecordView

THROUGHPUT_WINDOW = timedelta(hours=1)
FAILED = (TaskStatus.FAILURE.value, TaskStatus.DEAD.value)
TASK_STATUSES = [status.value for status in TaskStatus]


@dataclass(frozen=True)
class Throughput:
    """Tasks that finished in the window, by status, and the share of them that failed."""

    window: timedelta
    by_status: dict[str, int]

    @property
    def finished(self) -> int:
        return sum(self.by_status.values())

    @property
    def failed(self) -> int:
        return sum(self.by_status.get(status, 0) for status in FAILED)

    @property
    def failure_rate(self) -> float:
        return self.failed / self.finished if self.finished else 0.0

    @property
    def per_minute(self) -> float:
        return self.finished / (self.window.total_seconds() / 60)


@dataclass(frozen=True)
class Overview:
    """The first page: health levels, queues, workers, throughput and the alerts they call for."""

    readiness: Readiness
    queues: list[QueueStatus]
    workers: dict[str, list[str]]
    throughput: Throughput
    alerts: list[Alert]


@dataclass(frozen=True)
class TenantShare:
    """One tenant on one fair queue: its load, its share of the queue's slots and its waits."""

    queue: str
    tenant_id: str
    name: str
    plan: str
    weight: int
    running: int
    waiting: int
    share: float
    fair_share: float
    wait_p50: float | None
    wait_p99: float | None
    waits: int


class TaskDetail(TaskRecordView):
    """One task record as an operator reads it (arguments left out: they may carry secrets)."""

    traceback: str | None
    idempotency_key: str | None
    heartbeat_at: datetime | None
    updated_at: datetime

    @property
    def queued_seconds(self) -> float | None:
        if self.started_at is None:
            return None
        return (self.started_at - self.enqueued_at).total_seconds()

    @property
    def run_seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


def quantile(histogram: WaitHistogram, bounds: tuple[float, ...], q: float) -> float | None:
    """The upper bound of the bucket holding quantile ``q`` (None past the last bound)."""
    if histogram.count == 0:
        return None
    rank = q * histogram.count
    seen = 0
    for index, count in enumerate(histogram.buckets):
        seen += count
        if seen >= rank and count:
            return bounds[index] if index < len(bounds) else None
    return None


class OperationsService:
    """Reads for the operator's dashboard."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def overview(self) -> Overview:
        """Health components, queues, workers, the last hour's throughput and current alerts."""
        readiness = self.runtime.readiness.ready()
        workers, queues = self.queues()
        monitoring = self.runtime.settings.monitoring
        thresholds = QueueThresholds(monitoring.queue_max_length, monitoring.queue_max_age)
        return Overview(
            readiness=readiness,
            queues=queues,
            workers=workers,
            throughput=self.throughput(),
            alerts=evaluate(queues, thresholds),
        )

    def queues(self) -> tuple[dict[str, list[str]], list[QueueStatus]]:
        """Live workers (name -> queues) and every catalogued queue's status."""
        workers = self.runtime.presence.live()
        return workers, self.runtime.queues.statuses(workers)

    def heartbeat_ages(self) -> dict[str, float]:
        """Seconds since each live worker's last presence heartbeat."""
        now = time.time()
        return {
            name: max(now - seen, 0.0)
            for name, (_, seen) in heartbeats(self.runtime.presence).items()
        }

    def throughput(self, window: timedelta = THROUGHPUT_WINDOW) -> Throughput:
        """Tasks that finished within ``window``, by status."""
        since = utcnow() - window
        with self.runtime.db.session() as session:
            rows = session.execute(
                select(TaskRecord.status, func.count())
                .where(TaskRecord.finished_at >= since)
                .group_by(TaskRecord.status)
            ).all()
        return Throughput(window, {str(status): int(count) for status, count in rows})

    def queue_rates(self, window: timedelta = THROUGHPUT_WINDOW) -> dict[str, Throughput]:
        """Per queue: tasks that finished within ``window``, by status."""
        since = utcnow() - window
        with self.runtime.db.session() as session:
            rows = session.execute(
                select(TaskRecord.queue, TaskRecord.status, func.count())
                .where(TaskRecord.finished_at >= since)
                .group_by(TaskRecord.queue, TaskRecord.status)
            ).all()
        counts: dict[str, dict[str, int]] = {}
        for queue, status, count in rows:
            counts.setdefault(str(queue), {})[str(status)] = int(count)
        return {queue: Throughput(window, by_status) for queue, by_status in counts.items()}

    def tenant_shares(self) -> list[TenantShare]:
        """Every active tenant on every fair queue, with its share against its fair share."""
        queue = self.runtime.dispatcher.queue
        states = tenant_snapshot(queue)
        bounds = tuple(self.runtime.settings.scheduling.wait_buckets)
        names = self._tenants({state.tenant for state in states})
        histograms = {name: queue.wait_histograms(name) for name in {s.queue for s in states}}
        shares: list[TenantShare] = []
        for state in states:
            peers = [s for s in states if s.queue == state.queue]
            weights = sum(s.weight for s in peers if s.waiting or s.running)
            running = sum(s.running for s in peers)
            histogram = histograms[state.queue].get(state.tenant, WaitHistogram((), 0.0))
            name, plan = names.get(state.tenant, (state.tenant, ""))
            shares.append(
                TenantShare(
                    queue=state.queue,
                    tenant_id=state.tenant,
                    name=name,
                    plan=plan,
                    weight=state.weight,
                    running=state.running,
                    waiting=state.waiting,
                    share=state.running / running if running else 0.0,
                    fair_share=state.weight / weights
                    if weights and (state.waiting or state.running)
                    else 0.0,
                    wait_p50=quantile(histogram, bounds, 0.5),
                    wait_p99=quantile(histogram, bounds, 0.99),
                    waits=histogram.count,
                )
            )
        return shares

    def tenants(self) -> list[tuple[str, str, str, int]]:
        """Every tenant: id, name, plan and its plan's fair-share weight, by name."""
        weights = self.runtime.settings.tenancy.weights
        with self.runtime.db.session() as session:
            rows = session.execute(
                select(Tenant.id, Tenant.name, Tenant.plan).order_by(Tenant.name, Tenant.id)
            ).all()
        return [(r.id, r.name, str(r.plan), weights.get(Plan(r.plan), 1)) for r in rows]

    def refusals(self) -> dict[str, dict[str, int]]:
        """Admission refusals per tenant and limit (rate, daily runs)."""
        return self.runtime.admission.refusals()

    def task(self, task_id: str) -> TaskDetail:
        """One task record with its error and traceback; ``NotFound`` when unknown."""
        with self.runtime.db.session() as session:
            row = session.get(TaskRecord, task_id)
            if row is None:
                raise NotFound("task not found")
            return TaskDetail.model_validate(row, from_attributes=True)

    def _tenants(self, ids: set[str]) -> dict[str, tuple[str, str]]:
        if not ids:
            return {}
        with self.runtime.db.session() as session:
            rows = session.execute(
                select(Tenant.id, Tenant.name, Tenant.plan).where(Tenant.id.in_(sorted(ids)))
            ).all()
        return {r.id: (r.name, str(r.plan)) for r in rows}
