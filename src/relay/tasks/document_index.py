"""Adding a document to the keyword index and removing it: what enabling and disabling do.

The service flips ``Document.enabled`` in the request and enqueues one of these through the
outbox. Each applies the flag the document has *when it runs* (so an enable and a disable that
run out of order still leave the index matching the last request), in one ``effect()``
transaction that locks the document row: a redelivery changes nothing, and neither does a
second run of the same request.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select, update

from relay import catalog
from relay.models import Document, DocumentSegment, IndexingStatus
from relay.services.keyword_index import rebuild_keywords, remove_keywords
from relay.tasks.base import RelayTask, relay_task

log = logging.getLogger(__name__)


def _locked_document(session: Any, tenant_id: str, dataset_id: str, document_id: str) -> Any:
    return session.scalar(
        select(Document)
        .where(
            Document.tenant_id == tenant_id,
            Document.dataset_id == dataset_id,
            Document.id == document_id,
        )
        .with_for_update()
    )


def _set_segments_enabled(session: Any, document: Document, enabled: bool) -> None:
    session.execute(
        update(DocumentSegment)
        .where(
            DocumentSegment.tenant_id == document.tenant_id,
            DocumentSegment.document_id == document.id,
        )
        .values(enabled=enabled)
        .execution_options(synchronize_session=False)
    )


@relay_task(catalog.ADD_DOCUMENT_TO_INDEX)
def add_document_to_index(
    self: RelayTask, tenant_id: str, dataset_id: str, document_id: str
) -> dict[str, Any]:
    """Enable the document's segments and rebuild their keyword rows; returns the count."""
    self.require_tenant(tenant_id)
    with self.effect(scope=document_id) as session:
        if session is None:
            return {"skipped": "duplicate"}
        document = _locked_document(session, tenant_id, dataset_id, document_id)
        if document is None:
            return {"skipped": "missing"}
        if not document.enabled:
            return {"skipped": "disabled"}  # disabled again since: the removal wins
        if document.indexing_status != IndexingStatus.COMPLETED:
            # Indexing writes the keywords of an enabled document when it completes.
            return {"skipped": f"document is {document.indexing_status}"}
        _set_segments_enabled(session, document, True)
        keywords = rebuild_keywords(session, document)
    log.info(
        "document added to the index",
        extra={"action": "dataset.index_added", "document_id": document_id},
    )
    return {"keywords": keywords}


@relay_task(catalog.REMOVE_DOCUMENT_FROM_INDEX)
def remove_document_from_index(
    self: RelayTask, tenant_id: str, dataset_id: str, document_id: str
) -> dict[str, Any]:
    """Disable the document's segments and delete their keyword rows; returns the count."""
    self.require_tenant(tenant_id)
    with self.effect(scope=document_id) as session:
        if session is None:
            return {"skipped": "duplicate"}
        document = _locked_document(session, tenant_id, dataset_id, document_id)
        if document is None:
            return {"skipped": "missing"}
        if document.enabled:
            return {"skipped": "enabled"}  # enabled again since: the addition wins
        _set_segments_enabled(session, document, False)
        removed = remove_keywords(session, tenant_id, [document_id])
    log.info(
        "document removed from the index",
        extra={"action": "dataset.index_removed", "document_id": document_id},
    )
    return {"keywords": removed}
