"""The reaper: finds work a dead worker left behind and puts it back on its way.

Three kinds of stranded work, each checked on every beat:

1. A task record ``STARTED`` whose heartbeat stopped (the process running it died), or
   ``RECEIVED`` by a worker that is gone. The task is published again under the same id and
   headers (its effect is idempotent) or, when its retry policy is spent, buried as a dead
   letter (``worker_lost``).
2. A task record still ``PENDING`` long after it was published (the outbox writes one for each
   message it sends): the message was lost in transit, for example popped from the Redis list by
   a worker killed before it recorded it as unacked, or reserved by a worker that died before
   it recorded RECEIVED. Once the message no longer waits in its queue (the queue is empty, or
   its oldest waiting message is younger than the record), the task is published again, so it
   comes back within about a minute also on a busy queue.
3. A document stuck in an in-progress indexing status past the indexing time limit: put back to
   ``waiting`` and indexed again.

5. A record left at ``RETRY`` long past any retry delay (the retry's message was never
   published, e.g. the broker was down): published again the same way.

Each pass's transactions are database work only: Redis is asked before them, messages are sent
after their commit, and dead letters are written in the same transaction (never a nested one).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from relay import catalog
from relay.catalog import FAIR_QUEUES, spec_or_default, task_spec
from relay.config import Plan
from relay.events.handlers.document_indexing import indexing_queue
from relay.models import (
    Document,
    IndexingStatus,
    TaskRecord,
    TaskStatus,
    Tenant,
    utcnow,
)
from relay.retry import INFRASTRUCTURE_POLICY
from relay.services.document_status import transition
from relay.services.run_streams import fail_lost_runs

if TYPE_CHECKING:
    from relay.runtime import Runtime

log = logging.getLogger(__name__)

IN_PROGRESS = (
    IndexingStatus.PARSING,
    IndexingStatus.CLEANING,
    IndexingStatus.SPLITTING,
    IndexingStatus.INDEXING,
)


@dataclass
class ReapReport:
    """What one pass did."""

    requeued: int = 0
    buried: int = 0
    resent: int = 0
    documents: int = 0
    lost_runs: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


class Reaper:
    """One pass over stranded work; safe to run on several machines at once."""

    def __init__(self, runtime: Runtime, batch: int = 1000) -> None:
        self.runtime = runtime
        self.batch = batch

    def run(self) -> ReapReport:
        report = ReapReport()
        self._stale_tasks(report)
        self._lost_messages(report)
        self._stuck_retries(report)
        self._stuck_documents(report)
        self._runs_without_worker(report)
        if any(vars(report).values()):
            log.warning(
                "reaper recovered work", extra={"action": "reaper.recovered", **vars(report)}
            )
        return report

    # --- 1. stale heartbeats --------------------------------------------------------------------

    def _stale_tasks(self, report: ReapReport) -> None:
        settings = self.runtime.settings.celery
        cutoff = utcnow() - timedelta(seconds=settings.stale_after)
        db = self.runtime.db
        # Redis before the transaction, the broker after it: the transaction is database work
        # only, and the dead letters go into it (a second transaction would wait on this one).
        live = self.runtime.presence.live()
        sends: list[_Send] = []
        with db.transaction() as session:
            query = (
                select(TaskRecord)
                .where(TaskRecord.status.in_((TaskStatus.STARTED, TaskStatus.RECEIVED)))
                .where(TaskRecord.heartbeat_at < cutoff)
                .limit(self.batch)
            )
            if not db.is_sqlite:
                query = query.with_for_update(skip_locked=True)
            for record in session.scalars(query):
                if record.status == TaskStatus.RECEIVED and record.worker in live:
                    # Reserved by a live worker, waiting behind its current task: not stranded.
                    continue
                policy = spec_or_default(record.name, record.queue).retry
                if record.attempts >= policy.max_attempts:
                    self.runtime.lifecycle.dead_letters.bury(
                        task_id=record.id,
                        task_name=record.name,
                        queue=record.queue,
                        tenant_id=record.tenant_id,
                        args=list(record.args),
                        kwargs=dict(record.kwargs),
                        headers=dict(record.headers or {}),
                        reason="worker_lost",
                        error=f"worker {record.worker} stopped while running attempt "
                        f"{record.attempts}",
                        traceback=None,
                        attempts=record.attempts,
                        session=session,
                    )
                    record.status = TaskStatus.DEAD
                    record.finished_at = utcnow()
                    report.buried += 1
                else:
                    sends.append(_Send.of(record))
                    record.status = TaskStatus.PENDING
                    report.requeued += 1
                record.error = (
                    f"worker {record.worker} lost (no heartbeat since {record.heartbeat_at})"
                )
        # A send that fails leaves the record PENDING: the next passes resend it (part 2).
        self._send_all(sends)

    # --- 2. messages lost in transit ------------------------------------------------------------

    def _lost_messages(self, report: ReapReport) -> None:
        cutoff = utcnow() - timedelta(seconds=self.runtime.settings.celery.lost_after)
        pending = (
            select(TaskRecord)
            .where(TaskRecord.status == TaskStatus.PENDING)
            .where(TaskRecord.updated_at < cutoff)
            # The fair dispatcher holds those back on purpose; its own tick recovers them.
            .where(TaskRecord.queue.not_in(FAIR_QUEUES))
        )
        report.resent += self._resend_gone(pending)

    # --- 5. retries never delivered -------------------------------------------------------------

    def _stuck_retries(self, report: ReapReport) -> None:
        """Records at RETRY long past any retry delay: the retry's message was never published
        (the broker was down when the task asked for it) or was lost with the worker holding
        it. Sent again, like a lost message, once it is no longer waiting in its queue."""
        longest = max(
            INFRASTRUCTURE_POLICY.max_delay, max(spec.retry.max_delay for spec in catalog.TASKS)
        )
        cutoff = utcnow() - timedelta(seconds=longest + self.runtime.settings.celery.lost_after)
        stuck = (
            select(TaskRecord)
            .where(TaskRecord.status == TaskStatus.RETRY)
            .where(TaskRecord.updated_at < cutoff)
            .where(TaskRecord.queue.not_in(FAIR_QUEUES))
        )
        report.resent += self._resend_gone(stuck)

    def _resend_gone(self, stranded: Any) -> int:
        """Publish again the records of ``stranded`` whose message is no longer in its queue.

        On a busy queue a message may wait a long time: it is still there while the oldest
        message waiting in the queue was sent before the record's last update. Only when the
        oldest waiting message is younger (or the queue is empty) is the record's message gone.
        """
        db = self.runtime.db
        with db.session() as session:
            candidates = list(
                session.execute(
                    stranded.with_only_columns(
                        TaskRecord.id, TaskRecord.queue, TaskRecord.updated_at
                    )
                    .order_by(TaskRecord.updated_at)
                    .limit(self.batch)
                )
            )
        if not candidates:
            return 0
        # Queue state is Redis: asked between the read and the write transaction.
        queues = {queue for _, queue, _ in candidates}
        oldest = self._oldest_sent(queues)
        ids = [
            task_id
            for task_id, queue, updated in candidates
            if _gone(oldest.get(queue, 0.0), updated)
        ]
        if not ids:
            return 0  # what is queued may still be waiting its turn; look again next pass
        sends: list[_Send] = []
        with db.transaction() as session:
            query = stranded.where(TaskRecord.id.in_(ids))
            if not db.is_sqlite:
                query = query.with_for_update(skip_locked=True)
            for record in session.scalars(query):
                sends.append(_Send.of(record))
                record.status = TaskStatus.PENDING
                record.updated_at = utcnow()
        self._send_all(sends)
        return len(sends)

    def _oldest_sent(self, queues: set[str]) -> dict[str, float | None]:
        """Per queue: when its oldest waiting message was sent, ``None`` when the queue is empty,
        ``0.0`` when messages wait but their age cannot be read (then nothing counts as gone)."""
        now = time.time()
        ages = self.runtime.queues.oldest_ages(now)
        result: dict[str, float | None] = {}
        for queue in queues:
            if not self._queue_length(queue):
                result[queue] = None
                continue
            age = ages.get(queue)
            result[queue] = now - age if age is not None else 0.0
        return result

    def _queue_length(self, queue: str) -> int:
        return self.runtime.queues.length(queue)

    # --- 3. documents stuck mid-indexing --------------------------------------------------------

    def _stuck_documents(self, report: ReapReport) -> None:
        limit = task_spec(catalog.INDEX_DOCUMENTS.name).time_limit
        cutoff = utcnow() - timedelta(seconds=limit + 60)
        runtime = self.runtime
        with runtime.db.transaction() as session:
            query = (
                select(Document)
                .where(Document.indexing_status.in_(IN_PROGRESS))
                .where(Document.processing_started_at < cutoff)
                .limit(self.batch)
            )
            if not runtime.db.is_sqlite:
                query = query.with_for_update(skip_locked=True)
            stuck = list(session.scalars(query))
            groups: dict[tuple[str, str], list[str]] = {}
            for document in stuck:
                transition(
                    session,
                    document,
                    IndexingStatus.WAITING,
                    reason="the worker indexing it was lost; indexing starts again",
                )
                document.processing_started_at = None
                groups.setdefault((document.tenant_id, document.dataset_id), []).append(document.id)
            for (tenant_id, dataset_id), ids in groups.items():
                # The plan from this transaction, not the Redis cache: no Redis inside it.
                plan = session.scalar(select(Tenant.plan).where(Tenant.id == tenant_id))
                runtime.outbox.enqueue(
                    session,
                    catalog.INDEX_DOCUMENTS.name,
                    args=[tenant_id, dataset_id, ids],
                    tenant_id=tenant_id,
                    queue=indexing_queue(Plan(plan) if plan else None),
                )
            report.documents += len(stuck)

    # --- 4. workflow runs whose worker is gone ---------------------------------------------------

    def _runs_without_worker(self, report: ReapReport) -> None:
        # Each gets its terminal event, so a client's stream always ends.
        report.lost_runs += fail_lost_runs(self.runtime, self.batch)

    def _send_all(self, sends: list[_Send]) -> None:
        for send in sends:
            try:
                self.runtime.celery.send_task(
                    send.name,
                    args=send.args,
                    kwargs=send.kwargs,
                    task_id=send.task_id,
                    queue=send.queue,
                    headers=dict(send.headers),
                    retries=send.retries,
                )
            except Exception:
                log.exception(
                    "reaper could not resend a task; the next pass tries again",
                    extra={"action": "reaper.send_failed", "task_id": send.task_id},
                )


# Seconds between a record's update and its message's publish stamp that still count as the same
# message (the outbox writes the record, then publishes).
_SLACK = 5.0


def _gone(oldest_sent: float | None, updated_at: datetime) -> bool:
    """Whether a message published at ``updated_at`` has left a queue whose oldest waiting
    message was sent at ``oldest_sent`` (``None``: the queue is empty)."""
    if oldest_sent is None:
        return True
    if updated_at.tzinfo is None:
        updated_at = updated_at.replace(tzinfo=UTC)
    return oldest_sent > updated_at.timestamp() + _SLACK


@dataclass(frozen=True)
class _Send:
    """A message to publish again once the reaper's transaction has committed."""

    name: str
    task_id: str
    queue: str
    args: Any
    kwargs: Any
    headers: dict[str, Any]
    retries: int

    @classmethod
    def of(cls, record: TaskRecord) -> _Send:
        return cls(
            record.name,
            record.id,
            record.queue,
            list(record.args),
            dict(record.kwargs),
            dict(record.headers or {}),
            record.attempts,
        )
