"""Documents of a dataset: upload (then indexed in the background), read, delete, batch delete.

An upload is checked against the tenant's plan first (``relay.services.plan_limits``: 403
``plan_limit`` with the reason per document, nothing created), then creates its documents in
``waiting`` with their content as uploaded (Markdown and HTML are reduced to text by the
indexing task's parsing phase) and emits one ``document_index_created`` naming them; its
handler enqueues the indexing task. Pausing, retrying and enabling are in
``relay.services.indexing_service``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from relay import catalog
from relay.config import Plan
from relay.errors import BadRequest, NotFound, RelayError
from relay.events import signals
from relay.events.outbox import Outbox
from relay.events.payloads import DocumentDeleted, DocumentIndexCreated
from relay.models import (
    DataSourceType,
    Document,
    DocumentSegment,
    IndexingStatus,
    Tenant,
    new_id,
)
from relay.runtime import Runtime
from relay.services.dataset_service import require_dataset
from relay.services.document_status import transition
from relay.services.pagination import Page, PageParams, paginate
from relay.services.plan_limits import check_limits

MAX_DOCUMENT_BYTES = 1024 * 1024
"""Largest document accepted, in bytes of UTF-8 text as uploaded."""
MAX_BATCH_DELETE = 100
"""Most documents one batch delete may name."""
BATCH_CLEAN = catalog.BATCH_CLEAN_DOCUMENTS.name


class DocumentTooLarge(RelayError):
    """A document exceeds ``MAX_DOCUMENT_BYTES``."""

    status = 413
    code = "document_too_large"


class DocumentFormat(StrEnum):
    """How an uploaded text is written (the indexing task extracts its text accordingly)."""

    TEXT = "text"
    MARKDOWN = "markdown"
    HTML = "html"


@dataclass(frozen=True)
class NewDocument:
    """One document to upload; ``format`` None: detected from the name and the content."""

    name: str
    content: str
    format: DocumentFormat | None = None


class DocumentView(BaseModel):
    """A document and its indexing progress (``timings``: seconds per phase of the last run)."""

    model_config = ConfigDict(frozen=True)

    id: str
    dataset_id: str
    name: str
    format: str | None
    indexing_status: str
    error: str | None
    enabled: bool
    word_count: int
    tokens: int
    segment_count: int
    timings: dict[str, float] | None
    created_at: datetime
    updated_at: datetime
    processing_started_at: datetime | None
    completed_at: datetime | None


class DocumentBatch(BaseModel):
    """The documents one upload created (all ``waiting`` for indexing)."""

    documents: list[DocumentView]


class DocumentPage(Page[DocumentView]):
    """A page of a dataset's documents."""


def _check(doc: NewDocument) -> None:
    """The size and name checks, and some text to index."""
    size = len(doc.content.encode("utf-8"))
    if size > MAX_DOCUMENT_BYTES:
        raise DocumentTooLarge(
            f"document {doc.name!r} is {size} bytes; the limit is {MAX_DOCUMENT_BYTES}",
            details={"name": doc.name, "bytes": size, "limit": MAX_DOCUMENT_BYTES},
        )
    if not doc.name.strip() or len(doc.name) > 255:
        raise BadRequest("document name must be 1 to 255 characters", details={"field": "name"})
    if not doc.content.strip():
        raise BadRequest(f"document {doc.name!r} has no text", details={"field": "content"})


def _segment_counts(session: Session, tenant_id: str, ids: Sequence[str]) -> dict[str, int]:
    if not ids:
        return {}
    rows = session.execute(
        select(DocumentSegment.document_id, func.count())
        .where(DocumentSegment.tenant_id == tenant_id, DocumentSegment.document_id.in_(ids))
        .group_by(DocumentSegment.document_id)
    )
    return {document_id: int(count) for document_id, count in rows}


def document_views(
    session: Session, tenant_id: str, rows: Sequence[Document]
) -> list[DocumentView]:
    """The API's view of ``rows`` (one query for all their segment counts)."""
    counts = _segment_counts(session, tenant_id, [row.id for row in rows])
    return [
        DocumentView(
            id=row.id,
            dataset_id=row.dataset_id,
            name=row.name,
            format=row.content_format,
            indexing_status=row.indexing_status,
            error=row.error,
            enabled=row.enabled,
            word_count=row.word_count,
            tokens=row.tokens,
            segment_count=counts.get(row.id, 0),
            timings=row.indexing_timings,
            created_at=row.created_at,
            updated_at=row.updated_at,
            processing_started_at=row.processing_started_at,
            completed_at=row.completed_at,
        )
        for row in rows
    ]


def require_document(
    session: Session, tenant_id: str, dataset_id: str, document_id: str, *, lock: bool = False
) -> Document:
    """The tenant's document of that dataset; ``NotFound`` for unknown and other tenants' ids."""
    query = select(Document).where(
        Document.tenant_id == tenant_id,
        Document.dataset_id == dataset_id,
        Document.id == document_id,
    )
    row = session.scalar(query.with_for_update() if lock else query)
    if row is None:
        raise NotFound("document not found")
    return row


def require_documents(
    session: Session, tenant_id: str, dataset_id: str, ids: Sequence[str], *, lock: bool = False
) -> list[Document]:
    """All of ``ids`` (in that order), or ``NotFound`` naming the unknown ones."""
    query = select(Document).where(
        Document.tenant_id == tenant_id,
        Document.dataset_id == dataset_id,
        Document.id.in_(ids),
    )
    found = {row.id: row for row in session.scalars(query.with_for_update() if lock else query)}
    missing = [document_id for document_id in ids if document_id not in found]
    if missing:
        raise NotFound("document not found", details={"ids": missing})
    return [found[document_id] for document_id in ids]


def _unique_ids(ids: Sequence[str], limit: int) -> list[str]:
    unique = list(dict.fromkeys(ids))
    if not 1 <= len(unique) <= limit:
        raise BadRequest(f"name 1 to {limit} documents", details={"field": "ids"})
    return unique


class DocumentService:
    """Operations on the documents of a tenant's dataset."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @property
    def outbox(self) -> Outbox:
        return self.runtime.outbox

    def upload(
        self, tenant_id: str, dataset_id: str, documents: Sequence[NewDocument]
    ) -> DocumentBatch:
        """Create the documents (``waiting``); emits one ``document_index_created`` for all.

        Raises ``PlanLimitExceeded`` (403) when the upload breaks a limit of the tenant's plan.
        """
        if not documents:
            raise BadRequest("upload at least one document")
        for doc in documents:
            _check(doc)
        settings = self.runtime.settings.indexing
        with self.runtime.db.session() as session:
            require_dataset(session, tenant_id, dataset_id)
            plan = Plan(
                session.scalar(select(Tenant.plan).where(Tenant.id == tenant_id)) or Plan.SANDBOX
            )
            held = session.scalar(
                select(func.count(Document.id)).where(Document.tenant_id == tenant_id)
            )
        # An upload over the plan's limits is refused before it costs tokens (the transaction
        # checks again under the lock: this read is only a first look).
        refusal = check_limits(settings, plan, len(documents), int(held or 0))
        if refusal is not None:
            raise refusal.error([doc.name.strip() for doc in documents])
        # Admission before the transaction (a Redis call): each document is a task submission
        # against the plan's token bucket (429 with Retry-After; refused, nothing is created).
        admission = self.runtime.admission
        admission.check_submission(tenant_id, plan, len(documents)).enforce()
        try:
            return self._create(tenant_id, dataset_id, documents)
        except BaseException:
            # Nothing was created (a plan limit, a concurrent delete, a database error): the
            # tokens go back, so a refused upload costs the tenant nothing.
            admission.refund_submission(tenant_id, plan, len(documents))
            raise

    def _create(
        self, tenant_id: str, dataset_id: str, documents: Sequence[NewDocument]
    ) -> DocumentBatch:
        settings = self.runtime.settings.indexing
        with self.runtime.db.transaction() as session:
            require_dataset(session, tenant_id, dataset_id, lock=True)
            # Serialises the tenant's uploads, so that two cannot both pass the document count
            # (NO KEY UPDATE: inserts of the tenant's other rows do not wait for it).
            plan = session.scalar(
                select(Tenant.plan).where(Tenant.id == tenant_id).with_for_update(key_share=True)
            )
            held = session.scalar(
                select(func.count(Document.id)).where(Document.tenant_id == tenant_id)
            )
            refusal = check_limits(
                settings, Plan(plan or Plan.SANDBOX), len(documents), int(held or 0)
            )
            if refusal is not None:
                raise refusal.error([doc.name.strip() for doc in documents])
            last = session.scalar(
                select(func.max(Document.position)).where(
                    Document.tenant_id == tenant_id, Document.dataset_id == dataset_id
                )
            )
            position = (last or 0) + 1
            rows = []
            for offset, doc in enumerate(documents):
                row = Document(
                    id=new_id(),
                    tenant_id=tenant_id,
                    dataset_id=dataset_id,
                    name=doc.name.strip(),
                    data_source_type=DataSourceType.UPLOAD_FILE,
                    content=doc.content,
                    content_format=doc.format.value if doc.format else None,
                    position=position + offset,
                    indexing_status=None,
                    # An estimate until indexing counts the words of the extracted text.
                    word_count=0 if doc.format is DocumentFormat.HTML else len(doc.content.split()),
                )
                transition(session, row, IndexingStatus.WAITING, reason="uploaded")
                session.add(row)
                rows.append(row)
            session.flush()
            self.runtime.bus.emit(
                signals.document_index_created,
                DocumentIndexCreated(
                    tenant_id=tenant_id,
                    dataset_id=dataset_id,
                    document_ids=tuple(row.id for row in rows),
                ),
                session,
            )
            return DocumentBatch(documents=document_views(session, tenant_id, rows))

    def list_documents(self, tenant_id: str, dataset_id: str, page: PageParams) -> DocumentPage:
        """The dataset's documents, newest first."""
        with self.runtime.db.session() as session:
            require_dataset(session, tenant_id, dataset_id)
            query = (
                select(Document)
                .where(Document.tenant_id == tenant_id, Document.dataset_id == dataset_id)
                .order_by(Document.created_at.desc(), Document.position.desc())
            )
            return paginate(
                session,
                query,
                page,
                lambda rows: document_views(session, tenant_id, rows),
                DocumentPage,
            )

    def get(self, tenant_id: str, dataset_id: str, document_id: str) -> DocumentView:
        """One document with its status, error, word count, segment count and timings."""
        with self.runtime.db.session() as session:
            row = require_document(session, tenant_id, dataset_id, document_id)
            return document_views(session, tenant_id, [row])[0]

    def delete(self, tenant_id: str, dataset_id: str, document_id: str) -> None:
        """Delete the document (its segments cascade); emits ``document_was_deleted``."""
        with self.runtime.db.transaction() as session:
            require_document(session, tenant_id, dataset_id, document_id)
            session.execute(
                delete(Document).where(
                    Document.tenant_id == tenant_id,
                    Document.dataset_id == dataset_id,
                    Document.id == document_id,
                )
            )
            self.runtime.bus.emit(
                signals.document_was_deleted,
                DocumentDeleted(
                    tenant_id=tenant_id, dataset_id=dataset_id, document_id=document_id
                ),
                session,
            )

    def batch_delete(self, tenant_id: str, dataset_id: str, ids: Sequence[str]) -> list[str]:
        """Delete documents of one dataset, all or none (``NotFound`` names unknown ids).

        The rows go in this transaction (the database cascades to their segments, keyword rows
        and status logs); ``relay.dataset.batch_clean_documents`` is enqueued in it for what is
        left outside (stragglers, pause flags in Redis). One clean-up task for the batch,
        rather than a ``document_was_deleted`` event and a task per document.
        """
        unique = _unique_ids(ids, MAX_BATCH_DELETE)
        with self.runtime.db.transaction() as session:
            require_dataset(session, tenant_id, dataset_id, lock=True)
            require_documents(session, tenant_id, dataset_id, unique, lock=True)
            session.execute(
                delete(Document).where(
                    Document.tenant_id == tenant_id,
                    Document.dataset_id == dataset_id,
                    Document.id.in_(unique),
                )
            )
            self.outbox.enqueue(
                session, BATCH_CLEAN, args=[tenant_id, dataset_id, unique], tenant_id=tenant_id
            )
        return unique
