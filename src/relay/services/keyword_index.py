"""The keyword index of dataset segments, stored in SQL (``segment_keywords``), and its search.

Tokenizer (the same for segments and queries, deliberately simple):

- text is lower-cased; a *word* is a run of letters and digits (any script but CJK; ``_`` and
  punctuation separate words); words shorter than 2 characters or longer than 64, and English
  stopwords, are dropped;
- every CJK character (Han, kana, Hangul) is a token of its own, except a few grammatical
  particles that occur in nearly every sentence;
- each segment keeps each distinct token once.

A search scores a segment by how many distinct query tokens it contains, best first, and only
ever looks at one tenant's rows of the named datasets. Keyword rows exist only for the segments
of enabled documents (disabling a document deletes them, enabling rebuilds them); a search also
checks the document's and the segment's ``enabled`` flags, so a document disabled by other means
(the unused-dataset clean-up flips the flag alone) never matches either.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import CursorResult, delete, func, insert, select
from sqlalchemy.orm import Session

from relay.models import Dataset, Document, DocumentSegment, SegmentKeyword

MIN_WORD_CHARS = 2
MAX_KEYWORD_CHARS = 64  # SegmentKeyword.keyword
_INSERT_BATCH = 1000

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_CJK_CHAR = re.compile(f"[{_CJK}]")
_TOKEN = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")

STOPWORDS = frozenset(
    """
    a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers herself him himself his how i if in into is it its
    itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself yourselves
    """.split()  # noqa: SIM905 - a word list reads better as text
)
"""English function words (NLTK's list, abridged): they match nearly every segment."""

CJK_STOPWORDS = frozenset("的了是在和与及或也就都而之其这那个们我你他她它のはがをにでともへや")
"""CJK particles and pronouns that, as single characters, would match nearly every segment."""


def tokenize(text: str) -> list[str]:
    """The distinct index terms of ``text``, in order of first appearance."""
    terms: dict[str, None] = {}
    for token in _TOKEN.findall(text.lower()):
        if len(token) == 1:
            if not _CJK_CHAR.match(token):
                continue  # one letter or digit of a spaced script
            if token in CJK_STOPWORDS:
                continue
        elif len(token) > MAX_KEYWORD_CHARS or token in STOPWORDS:
            continue
        terms[token] = None
    return list(terms)


def _count(result: Any) -> int:
    return int(result.rowcount) if isinstance(result, CursorResult) else 0


def add_keywords(
    session: Session,
    *,
    tenant_id: str,
    dataset_id: str,
    document_id: str,
    segments: Iterable[tuple[str, Sequence[str]]],
) -> int:
    """Insert the keyword rows of ``segments`` (segment id, its terms); returns the row count."""
    rows = [
        {
            "segment_id": segment_id,
            "keyword": keyword,
            "tenant_id": tenant_id,
            "dataset_id": dataset_id,
            "document_id": document_id,
        }
        for segment_id, terms in segments
        for keyword in terms
    ]
    for start in range(0, len(rows), _INSERT_BATCH):
        session.execute(insert(SegmentKeyword), rows[start : start + _INSERT_BATCH])
    return len(rows)


def remove_keywords(session: Session, tenant_id: str, document_ids: Sequence[str]) -> int:
    """Delete every keyword row of the documents; returns how many there were."""
    if not document_ids:
        return 0
    result = session.execute(
        delete(SegmentKeyword).where(
            SegmentKeyword.tenant_id == tenant_id, SegmentKeyword.document_id.in_(document_ids)
        )
    )
    return _count(result)


def rebuild_keywords(session: Session, document: Document) -> int:
    """Replace the document's keyword rows with ones built from its segments' text."""
    remove_keywords(session, document.tenant_id, [document.id])
    rows = session.execute(
        select(DocumentSegment.id, DocumentSegment.content).where(
            DocumentSegment.tenant_id == document.tenant_id,
            DocumentSegment.document_id == document.id,
        )
    )
    return add_keywords(
        session,
        tenant_id=document.tenant_id,
        dataset_id=document.dataset_id,
        document_id=document.id,
        segments=[(segment_id, tokenize(content)) for segment_id, content in rows],
    )


@dataclass(frozen=True)
class SegmentMatch:
    """A segment that contains ``matched`` of the query's distinct terms."""

    segment_id: str
    dataset_id: str
    document_id: str
    position: int
    content: str
    keywords: list[str]
    matched: int
    document_name: str
    dataset_name: str


def search_segments(
    session: Session, tenant_id: str, dataset_ids: Sequence[str], terms: Sequence[str], limit: int
) -> list[SegmentMatch]:
    """The tenant's enabled segments of ``dataset_ids`` containing any of ``terms``: most
    matched terms first, then in document and segment order."""
    if not terms or not dataset_ids or limit <= 0:
        return []
    matches = (
        select(SegmentKeyword.segment_id, func.count().label("matched"))
        .where(
            SegmentKeyword.tenant_id == tenant_id,
            SegmentKeyword.dataset_id.in_(dataset_ids),
            SegmentKeyword.keyword.in_(terms),
        )
        .group_by(SegmentKeyword.segment_id)
        .subquery()
    )
    query = (
        select(DocumentSegment, matches.c.matched, Document.name, Dataset.name)
        .join(matches, matches.c.segment_id == DocumentSegment.id)
        .join(Document, Document.id == DocumentSegment.document_id)
        .join(Dataset, Dataset.id == DocumentSegment.dataset_id)
        .where(
            DocumentSegment.tenant_id == tenant_id,
            Document.tenant_id == tenant_id,
            Dataset.tenant_id == tenant_id,
            DocumentSegment.enabled.is_(True),
            Document.enabled.is_(True),
        )
        .order_by(
            matches.c.matched.desc(),
            Document.created_at,
            Document.position,
            DocumentSegment.position,
            DocumentSegment.id,
        )
        .limit(limit)
    )
    return [
        SegmentMatch(
            segment_id=segment.id,
            dataset_id=segment.dataset_id,
            document_id=segment.document_id,
            position=segment.position,
            content=segment.content,
            keywords=list(segment.keywords or []),
            matched=int(matched),
            document_name=document_name,
            dataset_name=dataset_name,
        )
        for segment, matched, document_name, dataset_name in session.execute(query)
    ]
