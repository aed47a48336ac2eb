"""Document indexing: ``relay.dataset.index_documents`` and ``retry_document_indexing``.

Each document moves ``waiting -> parsing -> cleaning -> splitting -> indexing -> completed``, or
ends in ``error`` (with the reason) or ``paused``. Every status is committed as it happens, with
a ``document_status_logs`` row (from, to, seconds spent in the old status, reason), so the UI
shows progress and users see the history; ``documents.indexing_timings`` keeps the seconds of
each phase of the last run. The outcome (segments, keyword index, word count, final status) is
one ``effect()`` transaction per document, keyed by the message's idempotency key and the
document id: a redelivered message skips the documents it already finished and finishes the
others, and a duplicate running alongside never writes segments twice.

Each phase step locks the document row, then re-checks that key: on PostgreSQL the lock waits
for a concurrent ``effect()`` that is finishing the same document, and the check then sees its
key, so a late duplicate cannot move a completed document back to ``parsing``.

Upload batches (``upload=True``) are checked against the tenant's plan first (see
``relay.services.plan_limits``). Between phases the run looks at the document's pause flag
(``relay.services.document_status.pause_key``) and parks the document in ``paused``. When the
soft time limit strikes, the document being worked on is marked ``error`` ("ran out of time"),
the ones not reached yet too, and the exception is re-raised (the task is dead-lettered).
"""

from __future__ import annotations

import logging

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import func, select

from relay import catalog
from relay.config import Plan
from relay.models import Document, IndexingStatus, Tenant
from relay.services.document_status import IN_PROGRESS, transition
from relay.services.plan_limits import check_limits
from relay.tasks.base import RelayTask, relay_task
from relay.tasks.document_run import DocumentRun
from relay.worker.lifecycle import ran_out_of_time

log = logging.getLogger(__name__)

OUT_OF_TIME = "ran out of time"
NOT_REACHED = "not indexed: the task ran out of time before reaching this document"


@relay_task(catalog.INDEX_DOCUMENTS)
def index_documents(
    self: RelayTask,
    tenant_id: str,
    dataset_id: str,
    document_ids: list[str],
    upload: bool = False,
) -> dict[str, str]:
    """Index each document; returns ``{document_id: outcome}`` with outcome ``completed``,
    ``error``, ``paused``, ``missing`` (deleted meanwhile, or not this tenant's) or ``skipped``
    (duplicate). ``upload``: the documents are one upload, checked against the plan first."""
    self.require_tenant(tenant_id)
    return _index_batch(self, tenant_id, dataset_id, list(dict.fromkeys(document_ids)), upload)


@relay_task(catalog.RETRY_DOCUMENT_INDEXING)
def retry_document_indexing(
    self: RelayTask, tenant_id: str, dataset_id: str, document_ids: list[str]
) -> dict[str, str]:
    """Index documents again after an error or a pause (the retry service set them waiting)."""
    self.require_tenant(tenant_id)
    return _index_batch(self, tenant_id, dataset_id, list(dict.fromkeys(document_ids)), False)


def _index_batch(
    task: RelayTask, tenant_id: str, dataset_id: str, ids: list[str], upload: bool
) -> dict[str, str]:
    options = task.runtime.settings.indexing
    current: int | None = None  # the position of the document being worked on
    try:
        if upload:
            refused = _refuse_over_plan(task, tenant_id, dataset_id, ids)
            if refused is not None:
                return refused
        outcomes: dict[str, str] = {}
        for position, document_id in enumerate(ids):
            current = position
            run = DocumentRun(task, tenant_id, dataset_id, document_id, options)
            outcomes[document_id] = run.run()
        return outcomes
    except Exception as exc:
        if not ran_out_of_time(exc):
            raise
        if current is None:
            _out_of_time(task, tenant_id, dataset_id, None, ids)
        else:
            _out_of_time(task, tenant_id, dataset_id, ids[current], ids[current + 1 :])
        if isinstance(exc, SoftTimeLimitExceeded):
            raise
        # Dead-lettered as out of time, not retried as whatever the interrupted call raised.
        raise SoftTimeLimitExceeded(f"{type(exc).__name__} while out of time") from exc


def _refuse_over_plan(
    task: RelayTask, tenant_id: str, dataset_id: str, ids: list[str]
) -> dict[str, str] | None:
    """Mark the whole batch ``error`` when it breaks the plan's limits; None when it fits."""
    settings = task.runtime.settings.indexing
    with task.runtime.db.session() as session:
        plan = session.scalar(select(Tenant.plan).where(Tenant.id == tenant_id))
        held = session.scalar(
            select(func.count(Document.id)).where(Document.tenant_id == tenant_id)
        )
    if plan is None:
        return dict.fromkeys(ids, "missing")
    # The batch is already among the tenant's documents: what it held before is the rest.
    refusal = check_limits(settings, Plan(plan), len(ids), max(int(held or 0) - len(ids), 0))
    if refusal is None:
        return None
    outcomes = dict.fromkeys(ids, "missing")
    with task.effect(scope="plan-limits") as tx:
        if tx is None:
            return dict.fromkeys(ids, "skipped")
        documents = tx.scalars(
            select(Document)
            .where(
                Document.tenant_id == tenant_id,
                Document.dataset_id == dataset_id,
                Document.id.in_(ids),
            )
            .with_for_update()
        )
        for document in documents:
            if document.indexing_status != IndexingStatus.WAITING:
                outcomes[document.id] = "skipped"
                continue
            transition(tx, document, IndexingStatus.ERROR, reason=refusal.reason)
            document.error = refusal.reason
            outcomes[document.id] = "error"
    log.warning(
        "upload refused by plan limits",
        extra={"action": "dataset.plan_limit", "tenant_id": tenant_id, "kind": refusal.kind},
    )
    return outcomes


def _out_of_time(
    task: RelayTask, tenant_id: str, dataset_id: str, current: str | None, rest: list[str]
) -> None:
    """Soft time limit: the current and the unreached documents end in ``error``.

    A plain transaction, not ``effect()``: no idempotency key is claimed, so a replay of the
    dead-lettered message indexes them.
    """
    unfinished = (IndexingStatus.WAITING, *IN_PROGRESS)
    with task.runtime.db.transaction() as session:
        documents = session.scalars(
            select(Document)
            .where(
                Document.tenant_id == tenant_id,
                Document.dataset_id == dataset_id,
                Document.id.in_([*([current] if current else []), *rest]),
                Document.indexing_status.in_(unfinished),
            )
            .with_for_update()
        )
        for document in documents:
            reason = OUT_OF_TIME if document.id == current else NOT_REACHED
            transition(session, document, IndexingStatus.ERROR, reason=reason)
            document.error = reason
    log.error(
        "indexing ran out of time",
        extra={"action": "dataset.index_time_limit", "document_id": current},
    )
