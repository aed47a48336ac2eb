"""The indexing of one document by one message: its phases, each committed as it happens.

Used by the tasks in ``relay.tasks.indexing`` (see there for the lifecycle and the guarantees).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, insert, select

from relay.config import IndexingSettings
from relay.models import (
    Document,
    DocumentSegment,
    DocumentStatusLog,
    IndexingStatus,
    ProcessedKey,
    SegmentStatus,
    new_id,
    utcnow,
)
from relay.services.dataset_text import (
    TextFormat,
    clean_text,
    detect_format,
    extract_text,
    split_text,
    word_count,
)
from relay.services.document_status import MAX_REASON_CHARS, pause_key, transition
from relay.services.keyword_index import add_keywords, remove_keywords, tokenize
from relay.tasks.base import RelayTask

log = logging.getLogger(__name__)


class _Done(Exception):
    """This document needs no (more) work from this message: ``outcome`` says why."""

    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


class _Unindexable(Exception):
    """The document's content cannot be indexed (the message goes to the document's error)."""


@dataclass
class _Source:
    name: str
    content: str
    content_format: str | None


@dataclass
class DocumentRun:
    """The indexing of one document by one message."""

    task: RelayTask
    tenant_id: str
    dataset_id: str
    document_id: str
    options: IndexingSettings
    timings: dict[str, float] = field(default_factory=dict)
    _phase: str = ""
    _phase_started: float = 0.0

    def run(self) -> str:
        """Index the document; returns the outcome (see ``index_documents``)."""
        if self.task.already_processed(scope=self.document_id):
            return "skipped"
        try:
            source = self._advance(IndexingStatus.PARSING, starting=True)
            try:
                fmt = TextFormat(
                    source.content_format or detect_format(source.name, source.content)
                )
                text = extract_text(source.content, fmt)
                self._advance(IndexingStatus.CLEANING)
                text = clean_text(text, remove_urls_emails=self.options.remove_urls_emails)
                if not text:
                    raise _Unindexable("the document has no text")
                self._advance(IndexingStatus.SPLITTING)
                segments = split_text(
                    text,
                    self.options.max_segment_chars,
                    self.options.segment_overlap,
                    separator=self.options.separator_text,
                )
                self._advance(IndexingStatus.INDEXING)
                terms = [tokenize(segment) for segment in segments]
            except (_Unindexable, ValueError, LookupError) as exc:
                log.warning(
                    "document not indexable",
                    extra={"action": "dataset.index_error", "document_id": self.document_id},
                )
                return self._finish([], [], error=str(exc) or type(exc).__name__)
        except _Done as done:
            return done.outcome
        return self._finish(segments, terms)

    # --- steps ----------------------------------------------------------------------------------

    def _scope(self) -> Any:
        return (
            Document.tenant_id == self.tenant_id,
            Document.dataset_id == self.dataset_id,
            Document.id == self.document_id,
        )

    def _lap(self) -> float | None:
        """Seconds in the current phase (recorded in ``timings``); None before the first."""
        if not self._phase:
            return None
        seconds = time.monotonic() - self._phase_started
        self.timings[self._phase] = round(seconds, 6)
        return seconds

    def _pause_requested(self) -> bool:
        return bool(self.task.runtime.redis.exists(pause_key(self.document_id)))

    def _advance(self, status: IndexingStatus, *, starting: bool = False) -> _Source:
        """Commit the next phase's status (or ``paused``); returns the document's source.

        Raises ``_Done`` when the document is gone, this message already finished it, it is
        paused, or a pause was requested (it is parked in ``paused`` first).
        """
        outcome = None
        # Asked before the transaction (no Redis call while it holds the row's lock); a pause
        # requested after this look is seen at the next phase.
        pause = self._pause_requested()
        with self.task.runtime.db.transaction() as session:
            document = session.scalar(select(Document).where(*self._scope()).with_for_update())
            if document is None:
                raise _Done("missing")
            key = self.task.effect_key(self.document_id)
            if key is not None and session.get(ProcessedKey, key) is not None:
                raise _Done("skipped")
            if starting and document.indexing_status == IndexingStatus.PAUSED:
                raise _Done("paused")  # waits for a resume, which enqueues it again
            seconds = self._lap() if not starting else _time_in_status(session, document)
            if pause:
                transition(
                    session, document, IndexingStatus.PAUSED, reason="paused", seconds=seconds
                )
                document.indexing_timings = dict(self.timings) if not starting else None
                outcome = "paused"
            else:
                transition(session, document, status, seconds=seconds)
                if starting:
                    document.processing_started_at = utcnow()
                    document.completed_at = None
                    document.error = None
                document.indexing_timings = dict(self.timings)
                source = _Source(document.name, document.content, document.content_format)
        if outcome is not None:
            raise _Done(outcome)
        self._phase, self._phase_started = status, time.monotonic()
        return source

    def _finish(self, segments: list[str], terms: list[list[str]], error: str | None = None) -> str:
        """The outcome, once: segments, keywords and ``completed``, or ``error`` with the reason."""
        with self.task.effect(scope=self.document_id) as session:
            if session is None:
                return "skipped"
            document = session.scalar(select(Document).where(*self._scope()).with_for_update())
            if document is None:
                return "missing"
            # A re-index replaces the document's segments (and their keywords) rather than
            # adding to them.
            remove_keywords(session, self.tenant_id, [self.document_id])
            session.execute(
                delete(DocumentSegment).where(
                    DocumentSegment.tenant_id == self.tenant_id,
                    DocumentSegment.document_id == self.document_id,
                )
            )
            if error is not None:
                transition(
                    session, document, IndexingStatus.ERROR, reason=error, seconds=self._lap()
                )
                document.error = error[:MAX_REASON_CHARS]
                document.completed_at = None
                document.indexing_timings = dict(self.timings)
                outcome = "error"
            else:
                self._store(session, document, segments, terms)
                outcome = "completed"
        self.task.runtime.redis.delete(pause_key(self.document_id))  # a pause came too late
        return outcome

    def _store(
        self, session: Any, document: Document, segments: list[str], terms: list[list[str]]
    ) -> None:
        ids = [new_id() for _ in segments]
        counts = [word_count(segment) for segment in segments]
        rows = [
            {
                "id": segment_id,
                "tenant_id": self.tenant_id,
                "dataset_id": self.dataset_id,
                "document_id": self.document_id,
                "position": position,
                "content": segment,
                "word_count": count,
                "keywords": keywords,
                "enabled": document.enabled,
                "status": SegmentStatus.COMPLETED,
            }
            for position, (segment_id, segment, count, keywords) in enumerate(
                zip(ids, segments, counts, terms, strict=True), 1
            )
        ]
        if rows:
            session.execute(insert(DocumentSegment), rows)
        if document.enabled:  # a disabled document keeps its segments out of the index
            add_keywords(
                session,
                tenant_id=self.tenant_id,
                dataset_id=self.dataset_id,
                document_id=self.document_id,
                segments=zip(ids, terms, strict=True),
            )
        transition(session, document, IndexingStatus.COMPLETED, seconds=self._lap())
        document.word_count = sum(counts)
        document.error = None
        document.completed_at = utcnow()
        document.indexing_timings = dict(self.timings)


def _time_in_status(session: Any, document: Document) -> float | None:
    """Seconds since the document's last logged status change (its time in the queue)."""
    since = session.scalar(
        select(DocumentStatusLog.created_at)
        .where(DocumentStatusLog.document_id == document.id)
        .order_by(DocumentStatusLog.id.desc())
        .limit(1)
    )
    return (utcnow() - since).total_seconds() if since is not None else None
