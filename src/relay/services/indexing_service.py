"""Steering a document's indexing: pause, resume, retry, enable, disable, and its status log.

Each operation is one transaction that locks the document rows it changes; the work it starts
is a catalogue task enqueued through the outbox in that transaction (on the queue of the
tenant's plan), so it runs if and only if the request commits.

- pause: sets the document's Redis pause flag; a ``waiting`` document is parked in ``paused``
  at once, one being indexed is parked by the task at its next phase boundary.
- resume: deletes the flag; a ``paused`` document goes back to ``waiting`` and is enqueued again
  (one whose task has not noticed the pause yet simply carries on).
- retry: ``error`` or ``paused`` documents go back to ``waiting`` and
  ``relay.dataset.retry_document_indexing`` is enqueued for them.
- enable / disable: flips ``Document.enabled`` and enqueues ``add_document_to_index`` /
  ``remove_document_from_index`` (rebuild / drop the keyword rows, mark segments). Both are
  idempotent: repeating one changes nothing and enqueues nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from relay import catalog
from relay.errors import BadRequest, Conflict
from relay.events.handlers.document_indexing import INDEX_DOCUMENTS, enqueue_dataset_task
from relay.models import Document, DocumentStatusLog, IndexingStatus
from relay.runtime import Runtime
from relay.services.dataset_service import require_dataset
from relay.services.document_service import (
    DocumentView,
    document_views,
    require_document,
    require_documents,
)
from relay.services.document_status import (
    PAUSABLE,
    PAUSE_TTL,
    RETRYABLE,
    pause_key,
    transition,
)

RETRY_INDEXING = catalog.RETRY_DOCUMENT_INDEXING.name
ADD_TO_INDEX = catalog.ADD_DOCUMENT_TO_INDEX.name
REMOVE_FROM_INDEX = catalog.REMOVE_DOCUMENT_FROM_INDEX.name
MAX_RETRY = 100


class StatusChange(BaseModel):
    """One status change of a document (``seconds``: time spent in ``from_status``)."""

    model_config = ConfigDict(frozen=True)

    from_status: str | None
    status: str
    reason: str | None
    seconds: float | None
    at: datetime


class StatusLog(BaseModel):
    """A document's status changes, oldest first (the latest ``limit`` of them)."""

    document_id: str
    data: list[StatusChange]


class StatusLogQuery(BaseModel):
    """How many of the latest status changes to show."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(100, ge=1, le=1000)


class DocumentList(BaseModel):
    """The documents an operation changed."""

    documents: list[DocumentView]


def _retryable(documents: Sequence[Document]) -> None:
    busy = {d.id: d.indexing_status for d in documents if d.indexing_status not in RETRYABLE}
    if busy:
        raise Conflict(
            "only documents in error or paused can be retried",
            details={"indexing_status": busy},
        )


class IndexingService:
    """Operations on the indexing of a tenant's documents."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def _enqueue(self, session: Session, task: str, tenant_id: str, args: list[Any]) -> None:
        runtime = self.runtime
        enqueue_dataset_task(runtime.outbox, runtime.redis, session, task, tenant_id, args)

    def pause(self, tenant_id: str, dataset_id: str, document_id: str) -> DocumentView:
        """Ask the indexing of a document to pause (a paused document stays as it is)."""
        with self.runtime.db.transaction() as session:
            document = require_document(session, tenant_id, dataset_id, document_id, lock=True)
            status = document.indexing_status
            if status != IndexingStatus.PAUSED:
                if status not in PAUSABLE:
                    raise Conflict(
                        f"the document is {status}; only waiting or indexing documents pause",
                        details={"indexing_status": status},
                    )
                if status == IndexingStatus.WAITING:
                    transition(session, document, IndexingStatus.PAUSED, reason="paused")
            view = document_views(session, tenant_id, [document])[0]
        if status != IndexingStatus.PAUSED:
            # After commit (no Redis call inside the transaction): the worker indexing the
            # document sees the flag at its next step; a waiting one is PAUSED in the database.
            self.runtime.redis.set(pause_key(document_id), "1", ex=PAUSE_TTL)
        return view

    def resume(self, tenant_id: str, dataset_id: str, document_id: str) -> DocumentView:
        """Take back a pause: a paused document is indexed again (enqueued through the outbox)."""
        with self.runtime.db.session() as session:
            require_document(session, tenant_id, dataset_id, document_id)
        # Before the transaction (and its enqueue), so the task it starts never sees the old
        # flag; after the ownership check, so nobody lifts another tenant's pause.
        self.runtime.redis.delete(pause_key(document_id))
        with self.runtime.db.transaction() as session:
            document = require_document(session, tenant_id, dataset_id, document_id, lock=True)
            status = document.indexing_status
            if status not in PAUSABLE and status != IndexingStatus.PAUSED:
                raise Conflict(
                    f"the document is {status}, not paused", details={"indexing_status": status}
                )
            if status == IndexingStatus.PAUSED:
                transition(session, document, IndexingStatus.WAITING, reason="resumed")
                self._enqueue(
                    session, INDEX_DOCUMENTS, tenant_id, [tenant_id, dataset_id, [document_id]]
                )
            return document_views(session, tenant_id, [document])[0]

    def retry(self, tenant_id: str, dataset_id: str, ids: Sequence[str]) -> DocumentList:
        """Index failed or paused documents again; all of them or (409, 404) none."""
        unique = list(dict.fromkeys(ids))
        if not 1 <= len(unique) <= MAX_RETRY:
            raise BadRequest(f"name 1 to {MAX_RETRY} documents", details={"field": "ids"})
        with self.runtime.db.session() as session:
            require_dataset(session, tenant_id, dataset_id)
            _retryable(require_documents(session, tenant_id, dataset_id, unique))
        # As in resume: the flags go before the transaction that enqueues the retry (and after
        # the checks, so a refused retry keeps a pending pause).
        self.runtime.redis.delete(*(pause_key(document_id) for document_id in unique))
        with self.runtime.db.transaction() as session:
            require_dataset(session, tenant_id, dataset_id)
            documents = require_documents(session, tenant_id, dataset_id, unique, lock=True)
            _retryable(documents)
            for document in documents:
                transition(session, document, IndexingStatus.WAITING, reason="retry")
                document.error = None
            self._enqueue(session, RETRY_INDEXING, tenant_id, [tenant_id, dataset_id, unique])
            return DocumentList(documents=document_views(session, tenant_id, documents))

    def set_enabled(
        self, tenant_id: str, dataset_id: str, document_id: str, enabled: bool
    ) -> DocumentView:
        """Add the document to the keyword index (``enabled``) or remove it from it."""
        with self.runtime.db.transaction() as session:
            document = require_document(session, tenant_id, dataset_id, document_id, lock=True)
            if document.enabled != enabled:
                document.enabled = enabled
                task = ADD_TO_INDEX if enabled else REMOVE_FROM_INDEX
                self._enqueue(session, task, tenant_id, [tenant_id, dataset_id, document_id])
            return document_views(session, tenant_id, [document])[0]

    def status_log(
        self, tenant_id: str, dataset_id: str, document_id: str, query: StatusLogQuery
    ) -> StatusLog:
        """The document's latest status changes, oldest first."""
        with self.runtime.db.session() as session:
            require_document(session, tenant_id, dataset_id, document_id)
            rows = list(
                session.scalars(
                    select(DocumentStatusLog)
                    .where(
                        DocumentStatusLog.tenant_id == tenant_id,
                        DocumentStatusLog.document_id == document_id,
                    )
                    .order_by(DocumentStatusLog.id.desc())
                    .limit(query.limit)
                )
            )
            return StatusLog(
                document_id=document_id,
                data=[
                    StatusChange(
                        from_status=row.from_status,
                        status=row.status,
                        reason=row.reason,
                        seconds=row.seconds,
                        at=row.created_at,
                    )
                    for row in reversed(rows)
                ],
            )
