"""``relay.dataset.index_documents``: parse, split and store uploaded documents as segments.

Each document moves ``waiting -> parsing -> splitting -> indexing -> completed`` (or ``error``
with its message). The intermediate statuses are committed as they happen so that the UI shows
progress; the outcome (segments, word count, final status) is one ``effect()`` transaction per
document, keyed by the message's idempotency key and the document id. So a redelivered message
skips the documents it already finished and finishes the others, and a duplicate running at the
same time as the original never writes segments twice.

A progress step also re-checks that key *after* updating the document row: on PostgreSQL that
update waits for the row lock of a concurrent ``effect()`` that is finishing the same document,
and the check then sees its key, so a late duplicate cannot move a completed document back to
``parsing``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from celery import shared_task
from sqlalchemy import CursorResult, delete, select, update

from relay.models import (
    Document,
    DocumentSegment,
    IndexingStatus,
    ProcessedKey,
    SegmentStatus,
    utcnow,
)
from relay.tasks.base import RelayTask
from relay.tasks.dataset_text import detect_format, extract_text, split_text, word_count

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 2000


class _Done(Exception):
    """This document needs no (more) work from this message: ``outcome`` says why."""

    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


class _Unindexable(Exception):
    """The document's content cannot be indexed (the message goes to the document's error)."""


@shared_task(name="relay.dataset.index_documents", base=RelayTask, bind=True)
def index_documents(
    self: RelayTask, tenant_id: str, dataset_id: str, document_ids: list[str]
) -> dict[str, str]:
    """Index each document; returns ``{document_id: outcome}`` with outcome ``completed``,
    ``error``, ``missing`` (deleted meanwhile, or not this tenant's) or ``skipped`` (duplicate)."""
    self.require_tenant(tenant_id)
    outcomes: dict[str, str] = {}
    for document_id in dict.fromkeys(document_ids):
        run = _DocumentRun(self, tenant_id, dataset_id, document_id)
        outcomes[document_id] = run.run()
    return outcomes


@dataclass
class _DocumentRun:
    """The indexing of one document by one message."""

    task: RelayTask
    tenant_id: str
    dataset_id: str
    document_id: str

    def run(self) -> str:
        if self.task.already_processed(scope=self.document_id):
            return "skipped"
        try:
            name, content = self._advance(IndexingStatus.PARSING, starting=True)
            try:
                text = extract_text(content, detect_format(name, content))
                if not text:
                    raise _Unindexable("the document has no text")
                self._advance(IndexingStatus.SPLITTING)
                segments = split_text(text)
                self._advance(IndexingStatus.INDEXING)
            except (_Unindexable, ValueError, LookupError) as exc:
                log.warning(
                    "document not indexable",
                    extra={"action": "dataset.index_error", "document_id": self.document_id},
                )
                return self._finish([], error=str(exc) or type(exc).__name__)
        except _Done as done:
            return done.outcome
        return self._finish(segments)

    # --- steps ----------------------------------------------------------------------------------

    def _scope(self) -> Any:
        return (
            Document.tenant_id == self.tenant_id,
            Document.dataset_id == self.dataset_id,
            Document.id == self.document_id,
        )

    def _advance(self, status: IndexingStatus, *, starting: bool = False) -> tuple[str, str]:
        """Commit a progress status; returns the document's (name, content).

        Raises ``_Done`` when the document is gone or this message already finished it.
        """
        values: dict[str, Any] = {"indexing_status": status}
        if starting:
            values.update(processing_started_at=utcnow(), completed_at=None, error=None)
        with self.task.runtime.db.transaction() as session:
            result = session.execute(
                update(Document)
                .where(*self._scope())
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if isinstance(result, CursorResult) and result.rowcount == 0:
                raise _Done("missing")
            key = self.task.effect_key(self.document_id)
            if key is not None and session.get(ProcessedKey, key) is not None:
                raise _Done("skipped")  # rolls the status back
            row = session.execute(select(Document.name, Document.content).where(*self._scope()))
            name, content = row.one()
            return str(name), str(content)

    def _finish(self, segments: list[str], error: str | None = None) -> str:
        """The outcome, once: segments and ``completed``, or ``error`` with its message."""
        with self.task.effect(scope=self.document_id) as session:
            if session is None:
                return "skipped"
            document = session.scalar(select(Document).where(*self._scope()).with_for_update())
            if document is None:
                return "missing"
            # A re-index replaces the document's segments rather than adding to them.
            session.execute(
                delete(DocumentSegment).where(
                    DocumentSegment.tenant_id == self.tenant_id,
                    DocumentSegment.document_id == self.document_id,
                )
            )
            now = utcnow()
            if error is not None:
                document.indexing_status = IndexingStatus.ERROR
                document.error = error[:MAX_ERROR_CHARS]
                document.completed_at = None
                return "error"
            counts = [word_count(segment) for segment in segments]
            session.add_all(
                DocumentSegment(
                    tenant_id=self.tenant_id,
                    dataset_id=self.dataset_id,
                    document_id=self.document_id,
                    position=position,
                    content=segment,
                    word_count=count,
                    status=SegmentStatus.COMPLETED,
                )
                for position, (segment, count) in enumerate(zip(segments, counts, strict=True), 1)
            )
            document.indexing_status = IndexingStatus.COMPLETED
            document.word_count = sum(counts)
            document.error = None
            document.completed_at = now
            return "completed"
