"""Uploaded documents are indexed by a task, on a queue chosen by the tenant's plan.

Paid plans get ``priority_dataset`` so that a sandbox tenant's bulk upload never delays them
(the same split as Dify's ``dataset`` / ``priority_dataset`` queues). The services use
:func:`enqueue_dataset_task` for the work they start themselves (resume, retry, enable,
disable), so every dataset task of a tenant lands on the same queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from sqlalchemy.orm import Session

from relay import catalog
from relay.config import Plan
from relay.events.bus import EventContext
from relay.events.handlers.tenant_plan import plan_in_transaction
from relay.events.outbox import Outbox
from relay.events.payloads import DocumentIndexCreated

INDEX_DOCUMENTS = catalog.INDEX_DOCUMENTS.name
SANDBOX_QUEUE = "dataset"
PRIORITY_QUEUE = "priority_dataset"


def indexing_queue(plan: Plan | None) -> str:
    """``priority_dataset`` for paid plans, ``dataset`` for sandbox (and unknown) tenants."""
    return PRIORITY_QUEUE if plan is not None and plan is not Plan.SANDBOX else SANDBOX_QUEUE


def enqueue_dataset_task(
    outbox: Outbox,
    client: redis.Redis,
    session: Session,
    task_name: str,
    tenant_id: str,
    args: Sequence[Any],
    kwargs: dict[str, Any] | None = None,
) -> None:
    """Enqueue a dataset task through the outbox, on the queue of the tenant's plan.

    The plan is read in ``session``'s transaction rather than from the Redis cache: callers hold
    a transaction (with its locks) here, and a database read by key beats a Redis round trip
    inside it. ``client`` is kept for callers' sake.
    """
    del client
    plan = plan_in_transaction(session, tenant_id)
    outbox.enqueue(
        session,
        task_name,
        args=list(args),
        kwargs=kwargs,
        tenant_id=tenant_id,
        queue=indexing_queue(plan),
    )


def enqueue_document_indexing(payload: DocumentIndexCreated, ctx: EventContext) -> None:
    """``document_index_created``: enqueue ``relay.dataset.index_documents`` for the upload
    batch (``upload=True``: the task checks the batch against the plan's limits first)."""
    if not payload.document_ids:
        return
    enqueue_dataset_task(
        ctx.outbox,
        ctx.redis,
        ctx.require_session(),
        INDEX_DOCUMENTS,
        payload.tenant_id,
        [payload.tenant_id, payload.dataset_id, list(payload.document_ids)],
        {"upload": True},
    )
