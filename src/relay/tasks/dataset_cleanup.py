"""Clean-up after a dataset or a document was deleted: the rows the deletion left behind.

The deleting request only removes the dataset (or document) row and enqueues these through the
outbox. Each runs its deletes in one ``effect()`` transaction, tenant-scoped, so a redelivered
message changes nothing. Set-based deletes (one statement per table), not row by row.

Both refuse to run while their dataset or document still exists: they clean up *after* a
deletion and must never be what deletes a live dataset's content.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from sqlalchemy import CursorResult, delete, select

from relay.models import AppDatasetJoin, Dataset, Document, DocumentSegment
from relay.tasks.base import RelayTask

log = logging.getLogger(__name__)


def _count(result: Any) -> int:
    return int(result.rowcount) if isinstance(result, CursorResult) else 0


@shared_task(name="relay.dataset.clean_dataset", base=RelayTask, bind=True)
def clean_dataset(self: RelayTask, tenant_id: str, dataset_id: str) -> dict[str, Any]:
    """Delete a deleted dataset's segments, documents and app joins; returns the counts."""
    self.require_tenant(tenant_id)
    with self.effect() as session:
        if session is None:
            return {"skipped": "duplicate"}
        alive = session.scalar(
            select(Dataset.id).where(Dataset.tenant_id == tenant_id, Dataset.id == dataset_id)
        )
        if alive is not None:
            log.warning(
                "dataset still exists; not cleaned",
                extra={"action": "dataset.clean_refused", "dataset_id": dataset_id},
            )
            return {"skipped": "dataset exists"}
        segments = session.execute(
            delete(DocumentSegment).where(
                DocumentSegment.tenant_id == tenant_id, DocumentSegment.dataset_id == dataset_id
            )
        )
        documents = session.execute(
            delete(Document).where(
                Document.tenant_id == tenant_id, Document.dataset_id == dataset_id
            )
        )
        joins = session.execute(
            delete(AppDatasetJoin).where(
                AppDatasetJoin.tenant_id == tenant_id, AppDatasetJoin.dataset_id == dataset_id
            )
        )
        return {
            "segments": _count(segments),
            "documents": _count(documents),
            "joins": _count(joins),
        }


@shared_task(name="relay.dataset.clean_document", base=RelayTask, bind=True)
def clean_document(
    self: RelayTask, tenant_id: str, dataset_id: str, document_id: str
) -> dict[str, Any]:
    """Delete a deleted document's segments; returns the count."""
    self.require_tenant(tenant_id)
    with self.effect() as session:
        if session is None:
            return {"skipped": "duplicate"}
        alive = session.scalar(
            select(Document.id).where(
                Document.tenant_id == tenant_id,
                Document.dataset_id == dataset_id,
                Document.id == document_id,
            )
        )
        if alive is not None:
            log.warning(
                "document still exists; not cleaned",
                extra={"action": "dataset.clean_refused", "document_id": document_id},
            )
            return {"skipped": "document exists"}
        segments = session.execute(
            delete(DocumentSegment).where(
                DocumentSegment.tenant_id == tenant_id,
                DocumentSegment.dataset_id == dataset_id,
                DocumentSegment.document_id == document_id,
            )
        )
        return {"segments": _count(segments)}
