"""The tenant's plan, cached in Redis for the decisions that run on every enqueue.

Which queue a tenant's indexing goes to depends on its plan; reading the tenant row for every
upload would be one query per event for a value that changes a few times a year. The cache is
written when a tenant is created or changes plan and read through (from the DB on a miss).

The write happens after the caller's transaction commits (never a Redis call inside it), so a
rolled-back change never reaches the cache. Inside a transaction the plan is read from the
database, not the cache (see ``plan_in_transaction``).
"""

from __future__ import annotations

import contextlib
import logging

import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from relay.adapters.sql import after_commit
from relay.config import Plan
from relay.events.bus import EventContext
from relay.events.payloads import TenantCreated, TenantUpdated
from relay.models import Tenant

log = logging.getLogger(__name__)

PLAN_TTL = 3600


def plan_key(tenant_id: str) -> str:
    """Redis key of the cached plan: ``relay:tenant:<id>:plan``."""
    return f"relay:tenant:{tenant_id}:plan"


def cache_tenant_plan(payload: TenantCreated | TenantUpdated, ctx: EventContext) -> None:
    """``tenant_was_created`` / ``tenant_was_updated``: remember the tenant's (new) plan."""

    def write() -> None:
        ctx.redis.set(plan_key(payload.tenant_id), payload.plan, ex=PLAN_TTL)

    if ctx.session is None:
        write()
    else:
        after_commit(ctx.session, write)  # no Redis call inside the caller's transaction


def plan_in_transaction(session: Session, tenant_id: str) -> Plan | None:
    """The tenant's plan read in the caller's transaction (a primary-key read, no Redis)."""
    stored = session.scalar(select(Tenant.plan).where(Tenant.id == tenant_id))
    return Plan(stored) if stored is not None else None


def tenant_plan(client: redis.Redis, session: Session, tenant_id: str) -> Plan | None:
    """The tenant's plan from the cache, else from the database (then cached); None if no tenant.

    A Redis error falls back to the database: the cache must never be what fails an event.
    """
    key = plan_key(tenant_id)
    try:
        cached = client.get(key)
    except redis.RedisError:
        log.warning("plan cache unavailable", extra={"action": "event.plan_cache_failed"})
        cached = None
    if cached is not None:
        try:
            return Plan(str(cached))
        except ValueError:
            pass  # an unknown value: read the truth below
    stored = session.scalar(select(Tenant.plan).where(Tenant.id == tenant_id))
    if stored is None:
        return None
    plan = Plan(stored)
    with contextlib.suppress(redis.RedisError):
        client.set(key, plan.value, ex=PLAN_TTL)
    return plan
