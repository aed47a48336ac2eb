"""Clean-up after datasets or documents were deleted: the rows the deletion left behind.

The deleting request only removes the dataset (or document) rows and enqueues these through the
outbox. Each runs its deletes in one ``effect()`` transaction, tenant-scoped, so a redelivered
message changes nothing. Set-based deletes (one statement per table), not row by row: segments,
their keyword index rows and the documents' status logs (the database cascades most of them
with the deleted rows; these catch whatever a cascade did not reach). Pause flags in Redis go
after the commit.

All refuse to touch a dataset or document that still exists: they clean up *after* a deletion
and must never be what deletes live content.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import CursorResult, delete, select

from relay import catalog
from relay.models import (
    AppDatasetJoin,
    Dataset,
    Document,
    DocumentSegment,
    DocumentStatusLog,
    SegmentKeyword,
)
from relay.services.document_status import pause_key
from relay.tasks.base import RelayTask, relay_task

log = logging.getLogger(__name__)


def _count(result: Any) -> int:
    return int(result.rowcount) if isinstance(result, CursorResult) else 0


@relay_task(catalog.CLEAN_DATASET)
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
        keywords = session.execute(
            delete(SegmentKeyword).where(
                SegmentKeyword.tenant_id == tenant_id, SegmentKeyword.dataset_id == dataset_id
            )
        )
        session.execute(
            delete(DocumentStatusLog).where(
                DocumentStatusLog.tenant_id == tenant_id,
                DocumentStatusLog.dataset_id == dataset_id,
            )
        )
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
            "keywords": _count(keywords),
            "documents": _count(documents),
            "joins": _count(joins),
        }


@relay_task(catalog.CLEAN_DOCUMENT)
def clean_document(
    self: RelayTask, tenant_id: str, dataset_id: str, document_id: str
) -> dict[str, Any]:
    """Delete a deleted document's segments and index rows; returns the segment count."""
    self.require_tenant(tenant_id)
    result = _clean_documents(self, tenant_id, dataset_id, [document_id])
    if result.get("alive"):
        return {"skipped": "document exists"}
    return {"segments": result["segments"]} if "segments" in result else result


@relay_task(catalog.BATCH_CLEAN_DOCUMENTS)
def batch_clean_documents(
    self: RelayTask, tenant_id: str, dataset_id: str, document_ids: list[str]
) -> dict[str, Any]:
    """Delete the segments, index rows and status logs of deleted documents; returns counts.

    Documents of the list that still exist are left alone (counted as ``alive``).
    """
    self.require_tenant(tenant_id)
    return _clean_documents(self, tenant_id, dataset_id, list(dict.fromkeys(document_ids)))


def _clean_documents(
    task: RelayTask, tenant_id: str, dataset_id: str, document_ids: list[str]
) -> dict[str, Any]:
    with task.effect() as session:
        if session is None:
            return {"skipped": "duplicate"}
        alive = set(
            session.scalars(
                select(Document.id).where(
                    Document.tenant_id == tenant_id,
                    Document.dataset_id == dataset_id,
                    Document.id.in_(document_ids),
                )
            )
        )
        if alive:
            log.warning(
                "documents still exist; not cleaned",
                extra={"action": "dataset.clean_refused", "count": len(alive)},
            )
        gone = [document_id for document_id in document_ids if document_id not in alive]
        counts = {"segments": 0, "keywords": 0, "logs": 0, "alive": len(alive)}
        if gone:
            counts["keywords"] = _count(
                session.execute(
                    delete(SegmentKeyword).where(
                        SegmentKeyword.tenant_id == tenant_id,
                        SegmentKeyword.document_id.in_(gone),
                    )
                )
            )
            counts["segments"] = _count(
                session.execute(
                    delete(DocumentSegment).where(
                        DocumentSegment.tenant_id == tenant_id,
                        DocumentSegment.dataset_id == dataset_id,
                        DocumentSegment.document_id.in_(gone),
                    )
                )
            )
            counts["logs"] = _count(
                session.execute(
                    delete(DocumentStatusLog).where(
                        DocumentStatusLog.tenant_id == tenant_id,
                        DocumentStatusLog.document_id.in_(gone),
                    )
                )
            )
    if gone:
        task.runtime.redis.delete(*(pause_key(document_id) for document_id in gone))
    return counts
