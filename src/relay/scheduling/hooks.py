"""The scheduler's entry points for the task runtime, beat and CLI, given a ``Runtime``.

``RelayTask.__call__`` wraps the task body in ``run_fairly``; beat calls ``tick`` every
``scheduling.tick_interval`` seconds; ``relay tenants`` prints ``tenant_snapshot``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from celery.exceptions import Ignore, Reject, Retry

from relay.config import Plan
from relay.scheduling import metrics
from relay.scheduling.dispatcher import FairDispatcher, RunSlot, TickReport, ticket_of
from relay.scheduling.settings import SchedulingSettings
from relay.scheduling.tenant_queue import Outcome, TenantState

if TYPE_CHECKING:
    from relay.runtime import Runtime

T = TypeVar("T")
log = logging.getLogger(__name__)

_ATTRIBUTE = "scheduler"


def scheduling_settings(runtime: Runtime) -> SchedulingSettings:
    """``runtime.settings.scheduling`` once it is mounted, the defaults until then."""
    value = getattr(runtime.settings, "scheduling", None)
    return value if isinstance(value, SchedulingSettings) else SchedulingSettings()


def scheduler_of(runtime: Runtime) -> FairDispatcher:
    """The runtime's dispatcher (``runtime.scheduler``), created on first use."""
    dispatcher = getattr(runtime, _ATTRIBUTE, None)
    if not isinstance(dispatcher, FairDispatcher):
        dispatcher = FairDispatcher.from_runtime(runtime, scheduling_settings(runtime))
        setattr(runtime, _ATTRIBUTE, dispatcher)
    return dispatcher


def run_fairly(dispatcher: FairDispatcher, request: Any, call: Callable[[], T]) -> T:
    """Run a task body under the scheduler: gate, lease heartbeat, charge and release.

    Messages the scheduler did not release run as they are. A copy that is not the live one
    raises ``Ignore`` (Celery acks it and stores no state). A ``Retry`` (or a ``Reject`` that
    requeues) frees the slot; the message goes back through the fair order when it arrives.
    """
    slot = dispatcher.begin(request)
    if slot is None:
        return call()
    if not slot.run:
        raise Ignore()
    started = time.monotonic()
    try:
        result = call()
    except Retry as exc:
        _finish(slot, started, Outcome.RETRY, _seconds(exc.when))
        raise
    except Reject as exc:
        _finish(slot, started, Outcome.RETRY if exc.requeue else Outcome.FAILURE)
        raise
    except BaseException:
        _finish(slot, started, Outcome.FAILURE)
        raise
    _finish(slot, started, Outcome.SUCCESS)
    return result


def _finish(slot: RunSlot, started: float, outcome: Outcome, retry_in: float = 0.0) -> None:
    try:
        slot.finish(time.monotonic() - started, outcome, retry_in=retry_in)
    except Exception:
        # The task's own outcome stands. Its lease lapses and the next tick reclaims the slot;
        # the task may then run again, which at-least-once delivery allows anyway.
        log.exception(
            "could not report the end of a task to the scheduler",
            extra={"action": "scheduling.finish_failed", "outcome": str(outcome)},
        )


def on_task_done(
    runtime: Runtime,
    request: Any,
    seconds: float | None,
    outcome: Outcome = Outcome.SUCCESS,
    *,
    cost: float | None = None,
    retry_in: float = 0.0,
) -> bool:
    """For runtimes that call ``begin`` themselves: report the end of ``request``'s run."""
    ticket = ticket_of(request)
    if ticket is None:
        return False
    return scheduler_of(runtime).task_finished(
        ticket, seconds, outcome=outcome, cost=cost, retry_in=retry_in
    )


def tick(runtime: Runtime) -> TickReport:
    """The periodic safety step (reclaim expired slots, refill windows); beat runs it."""
    return scheduler_of(runtime).tick()


def tenant_snapshot(runtime: Runtime, queue: str | None = None) -> list[TenantState]:
    """Every active tenant on every queue (or ``queue``), busiest first, for ``relay tenants``."""
    return metrics.tenant_snapshot(scheduler_of(runtime).queue, queue)


def register_scheduling_metrics(runtime: Runtime) -> metrics.SchedulingCollector:
    """Register the per-tenant scheduler metrics on ``runtime.metrics.registry`` (once)."""
    settings = scheduling_settings(runtime)
    return metrics.register_metrics(
        runtime.metrics.registry,
        scheduler_of(runtime).queue,
        settings.metrics_top_tenants,
        settings.wait_buckets,
    )


def _seconds(when: Any) -> float:
    """Celery's ``Retry.when``: a countdown in seconds or an ETA."""
    if isinstance(when, int | float):
        return float(when)
    if isinstance(when, datetime):
        moment = when if when.tzinfo else when.replace(tzinfo=UTC)
        return max((moment - datetime.now(UTC)).total_seconds(), 0.0)
    return 0.0


def fair_publisher(runtime: Runtime) -> Callable[[Any], None]:
    """Publish an outbox row through the dispatcher, as its tenant's plan (``Outbox.fair_submit``).

    The plan comes from the tenant-plan cache, else from the tenant's row.
    """
    from relay.events.handlers.tenant_plan import plan_key
    from relay.tasks.catalog import WORKFLOW_QUEUE_BY_PLAN

    by_queue = {queue: plan for plan, queue in reversed(list(WORKFLOW_QUEUE_BY_PLAN.items()))}

    def plan_of(tenant_id: str, queue: str) -> Plan:
        cached = runtime.redis.get(plan_key(tenant_id))
        if cached:
            return Plan(str(cached))
        from relay.models import Tenant

        with runtime.db.session() as session:
            tenant = session.get(Tenant, tenant_id)
        return Plan(tenant.plan) if tenant is not None else by_queue.get(queue, Plan.SANDBOX)

    def submit(row: Any) -> None:
        plan = plan_of(row.tenant_id, row.queue)
        scheduler_of(runtime).submit(
            row.tenant_id,
            plan,
            row.task_name,
            list(row.args),
            dict(row.kwargs),
            queue=row.queue,
            headers=dict(row.headers),
            task_id=row.id,
        )

    return submit
