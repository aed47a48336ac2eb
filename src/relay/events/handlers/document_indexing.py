"""Uploaded documents are indexed by a task, on a queue chosen by the tenant's plan.

Paid plans get ``priority_dataset`` so that a sandbox tenant's bulk upload never delays them
(the same split as Dify's ``dataset`` / ``priority_dataset`` queues).
"""

from __future__ import annotations

from relay.config import Plan
from relay.events.bus import EventContext
from relay.events.handlers.tenant_plan import tenant_plan
from relay.events.payloads import DocumentIndexCreated

INDEX_DOCUMENTS = "relay.dataset.index_documents"
SANDBOX_QUEUE = "dataset"
PRIORITY_QUEUE = "priority_dataset"


def indexing_queue(plan: Plan | None) -> str:
    """``priority_dataset`` for paid plans, ``dataset`` for sandbox (and unknown) tenants."""
    return PRIORITY_QUEUE if plan is not None and plan is not Plan.SANDBOX else SANDBOX_QUEUE


def enqueue_document_indexing(payload: DocumentIndexCreated, ctx: EventContext) -> None:
    """``document_index_created``: enqueue ``relay.dataset.index_documents`` for the batch."""
    if not payload.document_ids:
        return
    session = ctx.require_session()
    plan = tenant_plan(ctx.redis, session, payload.tenant_id)
    ctx.outbox.enqueue(
        session,
        INDEX_DOCUMENTS,
        args=[payload.tenant_id, payload.dataset_id, list(payload.document_ids)],
        tenant_id=payload.tenant_id,
        queue=indexing_queue(plan),
    )
