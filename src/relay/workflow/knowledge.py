"""Knowledge retrieval's boundary: a keyword index over dataset segments, scoped by tenant.

The knowledge-retrieval node calls :class:`KnowledgeIndex`. The SQL keyword index built by
document indexing implements it later; :class:`InMemoryKnowledgeIndex` ships here for tests
and demos and scores the same way (keyword overlap).
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

_WORD = re.compile(r"[a-z0-9]+")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")


def keywords(text: str) -> list[str]:
    """Index terms: lower-cased latin words and CJK characters and character pairs.

    CJK text has no spaces, so single characters and adjacent pairs stand in for words.
    """
    lowered = text.lower()
    terms = _WORD.findall(lowered)
    chars = _CJK.findall(lowered)
    terms.extend(chars)
    runs = re.findall(f"(?:{_CJK.pattern})+", lowered)
    for run in runs:
        terms.extend(run[i : i + 2] for i in range(len(run) - 1))
    return terms


@dataclass(frozen=True)
class RetrievedSegment:
    """A segment of a dataset document that matched a query."""

    dataset_id: str
    document_id: str
    segment_id: str
    content: str
    score: float
    document_name: str = ""
    dataset_name: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)


class KnowledgeIndex(Protocol):
    """Searches a tenant's datasets by keywords."""

    def search(
        self, tenant_id: str, dataset_ids: Sequence[str], query: str, top_k: int
    ) -> list[RetrievedSegment]:
        """Best ``top_k`` segments of ``dataset_ids`` (of ``tenant_id`` only), best first."""
        ...


@dataclass
class _Entry:
    tenant_id: str
    segment: RetrievedSegment
    terms: Counter[str]


class InMemoryKnowledgeIndex:
    """A keyword index in memory: TF-IDF-like overlap scores scaled to 0..1."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[_Entry] = []

    def add(
        self,
        tenant_id: str,
        dataset_id: str,
        content: str,
        *,
        document_id: str = "",
        segment_id: str | None = None,
        document_name: str = "",
        dataset_name: str = "",
        metadata: Mapping[str, Any] | None = None,
    ) -> RetrievedSegment:
        """Index one segment and return it (with score 0)."""
        with self._lock:
            segment = RetrievedSegment(
                dataset_id=dataset_id,
                document_id=document_id or f"{dataset_id}-doc",
                segment_id=segment_id or f"{dataset_id}-seg-{len(self._entries)}",
                content=content,
                score=0.0,
                document_name=document_name,
                dataset_name=dataset_name,
                metadata=dict(metadata or {}),
            )
            self._entries.append(_Entry(tenant_id, segment, Counter(keywords(content))))
        return segment

    def add_many(self, tenant_id: str, dataset_id: str, contents: Iterable[str]) -> None:
        """Index several segments of one dataset."""
        for content in contents:
            self.add(tenant_id, dataset_id, content)

    def search(
        self, tenant_id: str, dataset_ids: Sequence[str], query: str, top_k: int
    ) -> list[RetrievedSegment]:
        """Segments sharing the most (rarest) keywords with ``query``."""
        wanted = set(dataset_ids)
        with self._lock:
            pool = [
                e
                for e in self._entries
                if e.tenant_id == tenant_id and e.segment.dataset_id in wanted
            ]
        terms = set(keywords(query))
        if not terms or not pool:
            return []
        document_frequency = Counter(t for e in pool for t in terms if t in e.terms)
        weights = {t: math.log(1 + len(pool) / (1 + document_frequency[t])) + 1 for t in terms}
        best = sum(weights.values())
        scored: list[tuple[float, int, RetrievedSegment]] = []
        for position, entry in enumerate(pool):
            score = sum(w for t, w in weights.items() if t in entry.terms) / best
            if score > 0:
                scored.append((score, position, entry.segment))
        scored.sort(key=lambda item: (-item[0], item[1]))
        return [
            RetrievedSegment(**{**seg.__dict__, "score": round(score, 6)})
            for score, _, seg in scored[: max(top_k, 0)]
        ]
