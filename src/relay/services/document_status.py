"""A document's indexing status: its transitions (each one logged) and the pause flag.

Every change of ``Document.indexing_status`` goes through :func:`transition`, which appends a
:class:`DocumentStatusLog` row in the same transaction: the log is the document's history as
users see it (``GET .../documents/<id>/status-log``), and what tests read to check the order.

Pausing is a Redis flag per document (:func:`pause_key`): the indexing task looks at it between
phases and parks the document in ``paused``; resuming deletes it and enqueues the work again.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from relay.models import Document, DocumentStatusLog, IndexingStatus

IN_PROGRESS = frozenset(
    {
        IndexingStatus.PARSING,
        IndexingStatus.CLEANING,
        IndexingStatus.SPLITTING,
        IndexingStatus.INDEXING,
    }
)
"""Statuses of a document an indexing task is working on."""

PAUSABLE = IN_PROGRESS | {IndexingStatus.WAITING}
"""Statuses a pause request applies to (a paused document stays paused)."""

RETRYABLE = frozenset({IndexingStatus.ERROR, IndexingStatus.PAUSED})
"""Statuses a retry request applies to."""

PAUSE_TTL = 7 * 24 * 3600
"""Seconds a pause flag lives: a paused document's status says ``paused`` on its own; the flag
only has to outlive the run that is to notice it."""

MAX_REASON_CHARS = 2000


def pause_key(document_id: str) -> str:
    """Redis key of a document's pause request: ``relay:document:<id>:paused``."""
    return f"relay:document:{document_id}:paused"


def transition(
    session: Session,
    document: Document,
    status: IndexingStatus,
    *,
    reason: str | None = None,
    seconds: float | None = None,
) -> None:
    """Move ``document`` to ``status`` and log it (``seconds``: time spent in the old status).

    The caller commits; the log row and the status change are one transaction.
    """
    previous = document.indexing_status
    document.indexing_status = status
    session.add(
        DocumentStatusLog(
            tenant_id=document.tenant_id,
            dataset_id=document.dataset_id,
            document_id=document.id,
            from_status=previous,
            status=status,
            reason=reason[:MAX_REASON_CHARS] if reason else None,
            seconds=round(seconds, 6) if seconds is not None else None,
        )
    )
