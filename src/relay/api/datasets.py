"""Datasets (knowledge bases) of the calling tenant."""

from __future__ import annotations

from flask import Blueprint, Response
from pydantic import BaseModel, ConfigDict, Field

from relay.api.auth import current_runtime, tenant_id
from relay.api.body import Name, no_content, parse_body, parse_query, respond
from relay.api.openapi import TENANT, documented
from relay.services.dataset_service import DatasetPage, DatasetService, DatasetView
from relay.services.pagination import PageParams
from relay.services.segment_service import SegmentQuery, SegmentSearch, SegmentService

datasets = Blueprint("datasets", __name__)

_TAGS = ("datasets",)


class DatasetCreate(BaseModel):
    """A new, empty dataset."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    description: str = Field("", max_length=10_000)


def _service() -> DatasetService:
    return DatasetService(current_runtime())


@datasets.post("/datasets")
@documented(tags=_TAGS, security=TENANT, json=DatasetCreate, ok=(201, DatasetView))
def create_dataset() -> tuple[Response, int]:
    """Create a dataset."""
    body = parse_body(DatasetCreate)
    created = _service().create(tenant_id(), name=body.name, description=body.description)
    return respond(created, 201)


@datasets.get("/datasets")
@documented(tags=_TAGS, security=TENANT, query=PageParams, ok=(200, DatasetPage))
def list_datasets() -> tuple[Response, int]:
    """List the tenant's datasets, newest first."""
    return respond(_service().list_datasets(tenant_id(), parse_query(PageParams)))


@datasets.get("/datasets/<dataset_id>")
@documented(tags=_TAGS, security=TENANT, ok=(200, DatasetView), errors=(404,))
def get_dataset(dataset_id: str) -> tuple[Response, int]:
    """One dataset."""
    return respond(_service().get(tenant_id(), dataset_id))


@datasets.delete("/datasets/<dataset_id>")
@documented(tags=_TAGS, security=TENANT, ok=(204, None), errors=(404,))
def delete_dataset(dataset_id: str) -> tuple[Response, int]:
    """Delete the dataset with its documents."""
    _service().delete(tenant_id(), dataset_id)
    return no_content()


@datasets.get("/datasets/<dataset_id>/segments")
@documented(tags=_TAGS, security=TENANT, query=SegmentQuery, ok=(200, SegmentSearch), errors=(404,))
def search_segments(dataset_id: str) -> tuple[Response, int]:
    """Segments of the dataset's enabled documents matching the words of ``q``, ranked by how
    many distinct words each contains (the same terms as the keyword index: lower-cased words
    of 2+ characters without stopwords, single CJK characters)."""
    query = parse_query(SegmentQuery)
    return respond(SegmentService(current_runtime()).search(tenant_id(), dataset_id, query))
