"""Searching a dataset's segments by keywords: the API's search and the workflow's index.

Both read the SQL keyword index that document indexing builds (``relay.services.keyword_index``):
a segment ranks by how many distinct query terms it contains. ``SqlKnowledgeIndex`` is the
``relay.workflow.knowledge.KnowledgeIndex`` for the knowledge-retrieval node, scoring a segment
as the share of the query's terms it contains (0..1).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from relay.adapters.sql import Database
from relay.runtime import Runtime
from relay.services.dataset_service import require_dataset
from relay.services.keyword_index import SegmentMatch, search_segments, tokenize
from relay.workflow.knowledge import RetrievedSegment


class SegmentQuery(BaseModel):
    """A keyword search: ``q`` is free text, split into terms like the indexed segments."""

    model_config = ConfigDict(extra="forbid")

    q: str = Field("", max_length=1000, description="Words to look for (none: no segments)")
    limit: int = Field(10, ge=1, le=100, description="Most segments to return")


class SegmentHit(BaseModel):
    """A segment that matched: ``matched`` of the query's terms, listed in ``matched_terms``."""

    model_config = ConfigDict(frozen=True)

    id: str
    document_id: str
    document_name: str
    position: int
    content: str
    matched: int
    matched_terms: list[str]


class SegmentSearch(BaseModel):
    """Matching segments, most matched terms first."""

    query_terms: list[str]
    data: list[SegmentHit]


class SegmentService:
    """Keyword search over the segments of a tenant's dataset."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def search(self, tenant_id: str, dataset_id: str, query: SegmentQuery) -> SegmentSearch:
        """The dataset's enabled segments that contain any term of ``query.q``."""
        terms = tokenize(query.q)
        with self.runtime.db.session() as session:
            require_dataset(session, tenant_id, dataset_id)
            matches = search_segments(session, tenant_id, [dataset_id], terms, query.limit)
        return SegmentSearch(query_terms=terms, data=[_hit(match, terms) for match in matches])


def _hit(match: SegmentMatch, terms: list[str]) -> SegmentHit:
    have = set(match.keywords)
    return SegmentHit(
        id=match.segment_id,
        document_id=match.document_id,
        document_name=match.document_name,
        position=match.position,
        content=match.content,
        matched=match.matched,
        matched_terms=[term for term in terms if term in have],
    )


class SqlKnowledgeIndex:
    """``KnowledgeIndex`` over the SQL keyword index (tenant-scoped, enabled segments only)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def search(
        self, tenant_id: str, dataset_ids: Sequence[str], query: str, top_k: int
    ) -> list[RetrievedSegment]:
        """Best ``top_k`` segments of ``dataset_ids`` (of ``tenant_id`` only), best first."""
        terms = tokenize(query)
        if not terms or top_k <= 0:
            return []
        with self.db.session() as session:
            matches = search_segments(session, tenant_id, list(dataset_ids), terms, top_k)
        return [
            RetrievedSegment(
                dataset_id=match.dataset_id,
                document_id=match.document_id,
                segment_id=match.segment_id,
                content=match.content,
                score=round(match.matched / len(terms), 6),
                document_name=match.document_name,
                dataset_name=match.dataset_name,
                metadata={"position": match.position, "matched_terms": match.matched},
            )
            for match in matches
        ]
