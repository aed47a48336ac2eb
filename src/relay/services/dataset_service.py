"""Datasets (knowledge bases): create, read, delete. Always scoped by tenant.

Deleting a dataset deletes its row (the database cascades to its documents and their segments)
and its app joins, and emits ``dataset_was_deleted``, whose handler enqueues the cleanup task for
whatever lives outside this database (index entries, files) and any stragglers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from relay.errors import NotFound
from relay.events import signals
from relay.events.payloads import DatasetDeleted
from relay.models import AppDatasetJoin, Dataset, DatasetStatus, Document, new_id
from relay.runtime import Runtime
from relay.services.pagination import Page, PageParams, paginate


class DatasetView(BaseModel):
    """A dataset as the API shows it."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    description: str
    status: str
    indexing_technique: str | None
    document_count: int
    created_at: datetime
    updated_at: datetime


class DatasetPage(Page[DatasetView]):
    """A page of datasets."""


def require_dataset(
    session: Session, tenant_id: str, dataset_id: str, *, lock: bool = False
) -> Dataset:
    """The tenant's dataset ``dataset_id``; ``NotFound`` for unknown and other tenants' ids."""
    query = select(Dataset).where(Dataset.tenant_id == tenant_id, Dataset.id == dataset_id)
    if lock:
        query = query.with_for_update()
    row = session.scalar(query)
    if row is None:
        raise NotFound("dataset not found")
    return row


def _document_counts(session: Session, tenant_id: str, ids: Sequence[str]) -> dict[str, int]:
    if not ids:
        return {}
    rows = session.execute(
        select(Document.dataset_id, func.count())
        .where(Document.tenant_id == tenant_id, Document.dataset_id.in_(ids))
        .group_by(Document.dataset_id)
    )
    return {dataset_id: int(count) for dataset_id, count in rows}


def _views(session: Session, tenant_id: str, rows: Sequence[Dataset]) -> list[DatasetView]:
    counts = _document_counts(session, tenant_id, [row.id for row in rows])
    return [
        DatasetView(
            id=row.id,
            name=row.name,
            description=row.description,
            status=row.status,
            indexing_technique=row.indexing_technique,
            document_count=counts.get(row.id, 0),
            created_at=row.created_at,
            updated_at=row.updated_at,
        )
        for row in rows
    ]


class DatasetService:
    """Operations on a tenant's datasets."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def create(self, tenant_id: str, *, name: str, description: str = "") -> DatasetView:
        """Create an empty dataset."""
        with self.runtime.db.transaction() as session:
            row = Dataset(
                id=new_id(),
                tenant_id=tenant_id,
                name=name,
                description=description,
                status=DatasetStatus.NORMAL,
            )
            session.add(row)
            session.flush()
            return _views(session, tenant_id, [row])[0]

    def list_datasets(self, tenant_id: str, page: PageParams) -> DatasetPage:
        """The tenant's datasets, newest first."""
        with self.runtime.db.session() as session:
            query = (
                select(Dataset)
                .where(Dataset.tenant_id == tenant_id)
                .order_by(Dataset.created_at.desc(), Dataset.id.desc())
            )
            return paginate(
                session, query, page, lambda rows: _views(session, tenant_id, rows), DatasetPage
            )

    def get(self, tenant_id: str, dataset_id: str) -> DatasetView:
        """One of the tenant's datasets."""
        with self.runtime.db.session() as session:
            return _views(session, tenant_id, [require_dataset(session, tenant_id, dataset_id)])[0]

    def delete(self, tenant_id: str, dataset_id: str) -> None:
        """Delete the dataset; emits ``dataset_was_deleted``."""
        with self.runtime.db.transaction() as session:
            require_dataset(session, tenant_id, dataset_id, lock=True)
            session.execute(
                delete(AppDatasetJoin).where(
                    AppDatasetJoin.tenant_id == tenant_id, AppDatasetJoin.dataset_id == dataset_id
                )
            )
            session.execute(
                delete(Dataset).where(Dataset.tenant_id == tenant_id, Dataset.id == dataset_id)
            )
            self.runtime.bus.emit(
                signals.dataset_was_deleted,
                DatasetDeleted(tenant_id=tenant_id, dataset_id=dataset_id),
                session,
            )
