"""``FairRoute``: sends outbox rows of fairly scheduled queues through the dispatcher.

The outbox publishes every committed row; rows of tenants' work on a fair queue (workflow runs,
indexing) wait their turn in the dispatcher instead of going straight to Celery. The tenant's
plan (its weight and concurrency) comes from the tenant-plan cache, else from the tenant's row.
"""

from __future__ import annotations

from typing import Any

import redis

from relay.adapters.sql import Database
from relay.catalog import FAIR_QUEUES, WORKFLOW_QUEUE_BY_PLAN
from relay.config import Plan
from relay.events.handlers.tenant_plan import plan_key
from relay.models import OutboxMessage, Tenant
from relay.scheduling.dispatcher import FairDispatcher

# A queue tells the plan when nothing else does (workflow queues are per plan).
_PLAN_OF_QUEUE = {queue: plan for plan, queue in reversed(list(WORKFLOW_QUEUE_BY_PLAN.items()))}


class FairRoute:
    """The outbox's route for tenant work on fair queues."""

    def __init__(
        self,
        dispatcher: FairDispatcher,
        client: redis.Redis,
        db: Database,
        queues: frozenset[str] = FAIR_QUEUES,
    ) -> None:
        self.dispatcher = dispatcher
        self.redis = client
        self.db = db
        self.queues = queues

    def accepts(self, row: OutboxMessage) -> bool:
        """Whether ``row`` is tenant work on a fairly scheduled queue."""
        return bool(row.tenant_id) and row.queue in self.queues

    def plan_of(self, tenant_id: str, queue: str) -> Plan:
        """The tenant's plan: cached, else its row, else what its queue implies."""
        cached: Any = self.redis.get(plan_key(tenant_id))
        if cached:
            return Plan(str(cached))
        with self.db.session() as session:
            tenant = session.get(Tenant, tenant_id)
        return Plan(tenant.plan) if tenant is not None else _PLAN_OF_QUEUE.get(queue, Plan.SANDBOX)

    def submit(self, row: OutboxMessage) -> None:
        """Hand ``row`` to the dispatcher (its id stays the task id, so a resubmit is a no-op)."""
        tenant_id = str(row.tenant_id)
        self.dispatcher.submit(
            tenant_id,
            self.plan_of(tenant_id, row.queue),
            row.task_name,
            list(row.args),
            dict(row.kwargs),
            queue=row.queue,
            headers=dict(row.headers),
            task_id=row.id,
        )
