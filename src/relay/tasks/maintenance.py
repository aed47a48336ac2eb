"""Maintenance on beat: the reaper, and purging bookkeeping rows past their usefulness."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import CursorResult, delete

from relay import catalog
from relay.models import OutboxMessage, OutboxStatus, ProcessedKey, TaskRecord, utcnow
from relay.tasks.base import RelayTask, relay_task
from relay.tasks.reaper import Reaper

# A duplicate can only arrive while its message may still be redelivered; a week is far beyond
# the visibility timeout and the reaper's resend window.
KEEP_BOOKKEEPING = timedelta(days=7)


@relay_task(catalog.REAP)
def reap(self: RelayTask) -> dict[str, int]:
    """Requeue or bury tasks of dead workers, resend lost messages, restart stuck indexing."""
    return Reaper(self.runtime).run().as_dict()


@relay_task(catalog.PURGE)
def purge(self: RelayTask) -> dict[str, int]:
    """Delete sent outbox rows, processed keys and finished task records older than a week."""
    cutoff = utcnow() - KEEP_BOOKKEEPING
    counts: dict[str, int] = {}
    statements = {
        "outbox": delete(OutboxMessage).where(
            OutboxMessage.status == OutboxStatus.SENT, OutboxMessage.sent_at < cutoff
        ),
        "processed_keys": delete(ProcessedKey).where(ProcessedKey.processed_at < cutoff),
        "task_records": delete(TaskRecord).where(
            TaskRecord.finished_at.is_not(None), TaskRecord.finished_at < cutoff
        ),
    }
    for name, statement in statements.items():
        with self.runtime.db.transaction() as session:
            result = session.execute(statement)
            assert isinstance(result, CursorResult)
            counts[name] = int(result.rowcount or 0)
    return counts
