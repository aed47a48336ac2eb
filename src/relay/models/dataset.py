"""The dataset (knowledge base) aggregate: datasets, their documents and the documents' segments.

A document moves through :class:`IndexingStatus` as the indexing task parses, cleans, splits and
indexes its text into :class:`DocumentSegment` rows, each with its :class:`SegmentKeyword` rows
(the keyword index searched by retrieval). Every status change of a document is appended to
:class:`DocumentStatusLog`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from relay.models.base import Base, IdMixin, TenantOwned, TimestampMixin, UTCDateTime, utcnow
from relay.models.tenant import tenant_fk


class IndexingTechnique(StrEnum):
    """How a dataset's segments are indexed."""

    HIGH_QUALITY = "high_quality"
    ECONOMY = "economy"


class DatasetStatus(StrEnum):
    """Lifecycle of a dataset."""

    NORMAL = "normal"
    ARCHIVED = "archived"


class DataSourceType(StrEnum):
    """Where a document's text came from."""

    UPLOAD_FILE = "upload_file"
    NOTION_IMPORT = "notion_import"
    WEBSITE_CRAWL = "website_crawl"


class IndexingStatus(StrEnum):
    """Progress of a document through the indexing pipeline (as in Dify)."""

    WAITING = "waiting"
    PARSING = "parsing"
    CLEANING = "cleaning"
    SPLITTING = "splitting"
    INDEXING = "indexing"
    PAUSED = "paused"
    COMPLETED = "completed"
    ERROR = "error"


class SegmentStatus(StrEnum):
    """Progress of one segment."""

    WAITING = "waiting"
    INDEXING = "indexing"
    COMPLETED = "completed"
    ERROR = "error"


class Dataset(IdMixin, TimestampMixin, TenantOwned, Base):
    """A knowledge base: a set of documents that apps retrieve from."""

    __tablename__ = "datasets"

    tenant_id: Mapped[str] = tenant_fk()
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    indexing_technique: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32), nullable=False, default=DatasetStatus.NORMAL)

    def __repr__(self) -> str:
        return f"<Dataset {self.id} {self.name!r}>"


class Document(IdMixin, TimestampMixin, TenantOwned, Base):
    """One uploaded text in a dataset, with its indexing progress."""

    __tablename__ = "documents"

    tenant_id: Mapped[str] = tenant_fk()
    dataset_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("datasets.id", ondelete="CASCADE"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    data_source_type: Mapped[str] = mapped_column(
        String(32), nullable=False, default=DataSourceType.UPLOAD_FILE
    )
    content: Mapped[str] = mapped_column(Text, nullable=False, default="")
    position: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    indexing_status: Mapped[str] = mapped_column(
        String(32), nullable=False, default=IndexingStatus.WAITING, index=True
    )
    # How ``content`` is written (text, markdown, html); None: detected from name and content.
    content_format: Mapped[str | None] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    word_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    processing_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Seconds spent in each phase of the last indexing run: {"parsing": 0.01, ...}.
    indexing_timings: Mapped[dict[str, float] | None] = mapped_column(JSON(none_as_null=True))

    def __repr__(self) -> str:
        return f"<Document {self.id} {self.name!r} {self.indexing_status}>"


class DocumentSegment(IdMixin, TimestampMixin, TenantOwned, Base):
    """A chunk of a document's text, at a unique position within the document."""

    __tablename__ = "document_segments"
    __table_args__ = (UniqueConstraint("document_id", "position"),)

    tenant_id: Mapped[str] = tenant_fk()
    dataset_id: Mapped[str] = mapped_column(String(36), nullable=False, index=True)
    document_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("documents.id", ondelete="CASCADE"), nullable=False
    )
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    content: Mapped[str] = mapped_column(Text, nullable=False)
    word_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    keywords: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True))
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    status: Mapped[str] = mapped_column(String(32), nullable=False, default=SegmentStatus.WAITING)

    def __repr__(self) -> str:
        return f"<DocumentSegment {self.document_id}#{self.position}>"


class SegmentKeyword(TenantOwned, Base):
    """One keyword of one enabled segment: the keyword index, searched by dataset and keyword.

    Rows exist only for segments of enabled documents; disabling a document deletes them and
    enabling it rebuilds them from the segments' text.
    """

    __tablename__ = "segment_keywords"
    __table_args__ = (
        Index(None, "tenant_id", "dataset_id", "keyword"),
        Index(None, "document_id"),
    )

    segment_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("document_segments.id", ondelete="CASCADE"), primary_key=True
    )
    keyword: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Leading column of the search index, which serves tenant lookups as well.
    tenant_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False
    )
    dataset_id: Mapped[str] = mapped_column(String(36), nullable=False)
    document_id: Mapped[str] = mapped_column(String(36), nullable=False)

    def __repr__(self) -> str:
        return f"<SegmentKeyword {self.segment_id} {self.keyword!r}>"


class DocumentStatusLog(TenantOwned, Base):
    """One status change of a document, in the order it happened (``id`` increases).

    ``seconds`` is the time the document spent in ``from_status``; ``reason`` says why it
    changed when that is not progress (the error, a plan limit, a pause).
    """

    __tablename__ = "document_status_logs"
    __table_args__ = (Index(None, "document_id", "id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    tenant_id: Mapped[str] = tenant_fk()
    dataset_id: Mapped[str] = mapped_column(String(36), nullable=False)
    document_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("documents.id", ondelete="CASCADE"), nullable=False
    )
    from_status: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32), nullable=False)
    reason: Mapped[str | None] = mapped_column(Text)
    seconds: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)

    def __repr__(self) -> str:
        return f"<DocumentStatusLog {self.document_id} {self.from_status}->{self.status}>"
