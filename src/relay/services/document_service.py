"""Documents of a dataset: upload (then indexed in the background), read, delete.

An upload creates its documents in ``waiting`` and emits one ``document_index_created`` naming
them; its handler enqueues the indexing task, which parses, splits and indexes the text into
segments and moves each document through its indexing statuses.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from html.parser import HTMLParser

from pydantic import BaseModel, ConfigDict
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from relay.errors import BadRequest, NotFound, RelayError
from relay.events import signals
from relay.events.payloads import DocumentDeleted, DocumentIndexCreated
from relay.models import DataSourceType, Document, DocumentSegment, IndexingStatus, new_id
from relay.runtime import Runtime
from relay.services.dataset_service import require_dataset
from relay.services.pagination import Page, PageParams, paginate

MAX_DOCUMENT_BYTES = 1024 * 1024
"""Largest document accepted, in bytes of UTF-8 text as uploaded."""
MAX_DOCUMENTS_PER_UPLOAD = 10


class DocumentTooLarge(RelayError):
    """A document exceeds ``MAX_DOCUMENT_BYTES``."""

    status = 413
    code = "document_too_large"


class DocumentFormat(StrEnum):
    """How an uploaded text is written; HTML is reduced to its text on upload."""

    TEXT = "text"
    MARKDOWN = "markdown"
    HTML = "html"


@dataclass(frozen=True)
class NewDocument:
    """One document to upload."""

    name: str
    content: str
    format: DocumentFormat = DocumentFormat.TEXT


class DocumentView(BaseModel):
    """A document and its indexing progress."""

    model_config = ConfigDict(frozen=True)

    id: str
    dataset_id: str
    name: str
    indexing_status: str
    error: str | None
    enabled: bool
    word_count: int
    tokens: int
    segment_count: int
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None


class DocumentBatch(BaseModel):
    """The documents one upload created (all ``waiting`` for indexing)."""

    documents: list[DocumentView]


class DocumentPage(Page[DocumentView]):
    """A page of a dataset's documents."""


class _TextExtractor(HTMLParser):
    """The visible text of an HTML document (script and style dropped)."""

    _SKIP = frozenset({"script", "style", "head", "template"})
    _BLOCK = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skipping:
            self._skipping -= 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """Visible text of ``html``, one block per line."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts)
    lines = (re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def _check(doc: NewDocument) -> str:
    """The text to store for ``doc``, after the size and name checks."""
    size = len(doc.content.encode("utf-8"))
    if size > MAX_DOCUMENT_BYTES:
        raise DocumentTooLarge(
            f"document {doc.name!r} is {size} bytes; the limit is {MAX_DOCUMENT_BYTES}",
            details={"name": doc.name, "bytes": size, "limit": MAX_DOCUMENT_BYTES},
        )
    if not doc.name.strip() or len(doc.name) > 255:
        raise BadRequest("document name must be 1 to 255 characters", details={"field": "name"})
    text = html_to_text(doc.content) if doc.format is DocumentFormat.HTML else doc.content
    if not text.strip():
        raise BadRequest(f"document {doc.name!r} has no text", details={"field": "content"})
    return text


def _segment_counts(session: Session, tenant_id: str, ids: Sequence[str]) -> dict[str, int]:
    if not ids:
        return {}
    rows = session.execute(
        select(DocumentSegment.document_id, func.count())
        .where(DocumentSegment.tenant_id == tenant_id, DocumentSegment.document_id.in_(ids))
        .group_by(DocumentSegment.document_id)
    )
    return {document_id: int(count) for document_id, count in rows}


def _views(session: Session, tenant_id: str, rows: Sequence[Document]) -> list[DocumentView]:
    counts = _segment_counts(session, tenant_id, [row.id for row in rows])
    return [
        DocumentView(
            id=row.id,
            dataset_id=row.dataset_id,
            name=row.name,
            indexing_status=row.indexing_status,
            error=row.error,
            enabled=row.enabled,
            word_count=row.word_count,
            tokens=row.tokens,
            segment_count=counts.get(row.id, 0),
            created_at=row.created_at,
            updated_at=row.updated_at,
            completed_at=row.completed_at,
        )
        for row in rows
    ]


def _require_document(
    session: Session, tenant_id: str, dataset_id: str, document_id: str
) -> Document:
    row = session.scalar(
        select(Document).where(
            Document.tenant_id == tenant_id,
            Document.dataset_id == dataset_id,
            Document.id == document_id,
        )
    )
    if row is None:
        raise NotFound("document not found")
    return row


class DocumentService:
    """Operations on the documents of a tenant's dataset."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def upload(
        self, tenant_id: str, dataset_id: str, documents: Sequence[NewDocument]
    ) -> DocumentBatch:
        """Create the documents (``waiting``); emits one ``document_index_created`` for all."""
        if not 1 <= len(documents) <= MAX_DOCUMENTS_PER_UPLOAD:
            raise BadRequest(f"upload 1 to {MAX_DOCUMENTS_PER_UPLOAD} documents at a time")
        texts = [_check(doc) for doc in documents]
        with self.runtime.db.transaction() as session:
            require_dataset(session, tenant_id, dataset_id, lock=True)
            last = session.scalar(
                select(func.max(Document.position)).where(
                    Document.tenant_id == tenant_id, Document.dataset_id == dataset_id
                )
            )
            position = (last or 0) + 1
            rows = []
            for offset, (doc, text) in enumerate(zip(documents, texts, strict=True)):
                row = Document(
                    id=new_id(),
                    tenant_id=tenant_id,
                    dataset_id=dataset_id,
                    name=doc.name.strip(),
                    data_source_type=DataSourceType.UPLOAD_FILE,
                    content=text,
                    position=position + offset,
                    indexing_status=IndexingStatus.WAITING,
                    word_count=len(text.split()),
                )
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
            return DocumentBatch(documents=_views(session, tenant_id, rows))

    def list_documents(self, tenant_id: str, dataset_id: str, page: PageParams) -> DocumentPage:
        """The dataset's documents, newest first."""
        with self.runtime.db.transaction() as session:
            require_dataset(session, tenant_id, dataset_id)
            query = (
                select(Document)
                .where(Document.tenant_id == tenant_id, Document.dataset_id == dataset_id)
                .order_by(Document.created_at.desc(), Document.position.desc())
            )
            return paginate(
                session, query, page, lambda rows: _views(session, tenant_id, rows), DocumentPage
            )

    def get(self, tenant_id: str, dataset_id: str, document_id: str) -> DocumentView:
        """One document with its status, error, word count and segment count."""
        with self.runtime.db.transaction() as session:
            row = _require_document(session, tenant_id, dataset_id, document_id)
            return _views(session, tenant_id, [row])[0]

    def delete(self, tenant_id: str, dataset_id: str, document_id: str) -> None:
        """Delete the document (its segments cascade); emits ``document_was_deleted``."""
        with self.runtime.db.transaction() as session:
            _require_document(session, tenant_id, dataset_id, document_id)
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
