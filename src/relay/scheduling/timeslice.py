"""Time slices for long workflow runs: yield at a node boundary when others are waiting.

The workflow engine asks a ``SliceController`` at every node boundary whether to yield. The run
yields only when it has used its plan's slice *and* another tenant has work that could run on the
same queue right now; with nobody waiting it keeps its worker. A yielding run checkpoints, calls
``requeue_continuation`` (the continuation waits in the fair order like any other item) and then
returns, which frees its slot and charges the slice to its tenant.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from relay.catalog import WORKFLOW_QUEUE_BY_PLAN
from relay.config import Plan
from relay.scheduling.dispatcher import FairDispatcher, FairTicket
from relay.scheduling.settings import SchedulingSettings
from relay.scheduling.tenant_queue import TenantQueue


class SliceController(Protocol):
    """What the workflow engine calls at node boundaries."""

    def should_yield(self, elapsed: float) -> bool:
        """True when the run should checkpoint and yield now (``elapsed`` seconds so far)."""
        ...


def workflow_queue(plan: Plan) -> str:
    """The workflow queue of ``plan`` (from the task catalogue)."""
    return WORKFLOW_QUEUE_BY_PLAN[plan]


class TimeSlicePolicy:
    """Decides whether a run past its slice must yield; probes Redis at most once a second."""

    def __init__(
        self,
        queue: TenantQueue,
        settings: SchedulingSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.queue = queue
        self.settings = settings
        self.clock = clock
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[float, bool]] = {}

    def should_yield(
        self, tenant: str, plan: Plan | str, elapsed: float, *, queue: str | None = None
    ) -> bool:
        """True when ``elapsed`` exceeds the plan's slice and other tenants wait on ``queue``.

        ``queue`` defaults to the plan's workflow queue: only work on the same queue can use the
        worker slot this run would give up.
        """
        plan = Plan(plan)
        if elapsed <= self.settings.slice_for(plan):
            return False
        return self.others_waiting(tenant, queue or workflow_queue(plan))

    def others_waiting(self, tenant: str, queue: str) -> bool:
        """Cached ``TenantQueue.others_waiting`` (node boundaries can be frequent)."""
        key = (queue, tenant)
        now = self.clock()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and now - cached[0] < self.settings.slice_probe_interval:
            return cached[1]
        answer = self.queue.others_waiting(queue, tenant)
        with self._lock:
            self._cache[key] = (now, answer)
        return answer


class TenantSliceController:
    """``SliceController`` for one run of ``tenant`` (adapter over ``TimeSlicePolicy``)."""

    def __init__(
        self, policy: TimeSlicePolicy, tenant: str, plan: Plan | str, queue: str | None = None
    ) -> None:
        self.policy = policy
        self.tenant = tenant
        self.plan = Plan(plan)
        self.queue = queue

    def should_yield(self, elapsed: float) -> bool:
        """True when the run is past its slice and another tenant is waiting."""
        return self.policy.should_yield(self.tenant, self.plan, elapsed, queue=self.queue)


class NeverYield:
    """``SliceController`` for runs outside the scheduler (tests, direct calls)."""

    def should_yield(self, elapsed: float) -> bool:
        """Never yields."""
        return False


def requeue_continuation(
    dispatcher: FairDispatcher,
    ticket: FairTicket,
    plan: Plan | str,
    task_name: str,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    continuation_id: str | None = None,
    headers: Mapping[str, Any] | None = None,
) -> str:
    """Submit the continuation of a yielding run (same tenant, queue and task type).

    Call it *before* the yielding task returns, so the tenant stays active and keeps its virtual
    runtime. Pass a deterministic ``continuation_id`` (e.g. ``f"{run_id}:{checkpoint}"``): a
    repeated call then submits nothing new.
    """
    return dispatcher.submit(
        ticket.tenant,
        plan,
        task_name,
        args,
        kwargs,
        queue=ticket.queue,
        headers=headers,
        task_id=continuation_id,
        task_type=ticket.task_type,
    )
