"""Deleting a dataset or a document leaves work too large for the request: a task does it.

The service deletes the row in its transaction; these receivers put the clean-up task into the
same transaction through the outbox, so it runs if and only if the deletion commits.
"""

from __future__ import annotations

from relay import catalog
from relay.events.bus import EventContext
from relay.events.payloads import DatasetDeleted, DocumentDeleted

CLEAN_DATASET = catalog.CLEAN_DATASET.name
CLEAN_DOCUMENT = catalog.CLEAN_DOCUMENT.name


def enqueue_dataset_cleanup(payload: DatasetDeleted, ctx: EventContext) -> None:
    """``dataset_was_deleted``: enqueue ``relay.dataset.clean_dataset``."""
    ctx.outbox.enqueue(
        ctx.require_session(),
        CLEAN_DATASET,
        args=[payload.tenant_id, payload.dataset_id],
        tenant_id=payload.tenant_id,
    )


def enqueue_document_cleanup(payload: DocumentDeleted, ctx: EventContext) -> None:
    """``document_was_deleted``: enqueue ``relay.dataset.clean_document``."""
    ctx.outbox.enqueue(
        ctx.require_session(),
        CLEAN_DOCUMENT,
        args=[payload.tenant_id, payload.dataset_id, payload.document_id],
        tenant_id=payload.tenant_id,
    )
