"""Transactional outbox: a task enqueued in a transaction is published only if it commits.

``Outbox.enqueue(session, ...)`` adds an ``OutboxMessage`` row to the caller's transaction. When
the outermost transaction commits, the rows are published to Celery (the row id is the task id,
the idempotency key travels in the headers) and marked sent. A rolled-back transaction publishes
nothing, and nor does a rolled-back savepoint: its rows are no longer persistent at commit.

If the process dies between commit and publish, the row stays ``pending``; ``relay_pending()``
(run by beat every few seconds) republishes rows older than a grace period. A row may therefore
be published twice; the task side applies an idempotency key at most once
(``RelayTask.effect()``), so the effect happens once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import event, inspect, select, update
from sqlalchemy.orm import Session

from relay.extensions.ext_db import Database
from relay.models import OutboxMessage, OutboxStatus, new_id, utcnow
from relay.tasks.catalog import task_spec

log = logging.getLogger(__name__)

_PENDING = "relay_outbox_pending"


class Outbox:
    """Writes outbox rows and publishes them after commit."""

    def __init__(self, db: Database, celery: Any) -> None:
        self.db = db
        self.celery = celery
        event.listen(db.sessions, "after_commit", self._after_commit)
        event.listen(db.sessions, "after_rollback", self._after_rollback)

    def enqueue(
        self,
        session: Session,
        task_name: str,
        *,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        tenant_id: str | None = None,
        idempotency_key: str | None = None,
        queue: str | None = None,
    ) -> OutboxMessage:
        """Add a task to ``session``'s transaction; it is published once that commits."""
        row_id = new_id()
        key = idempotency_key or f"outbox:{row_id}"
        row = OutboxMessage(
            id=row_id,
            tenant_id=tenant_id,
            task_name=task_name,
            queue=queue or task_spec(task_name).queue,
            args=list(args),
            kwargs=dict(kwargs or {}),
            headers={"idempotency_key": key, "tenant_id": tenant_id},
            idempotency_key=key,
            status=OutboxStatus.PENDING,
        )
        session.add(row)
        session.info.setdefault(_PENDING, []).append(row)
        return row

    # --- after commit ---------------------------------------------------------------------------

    def _after_commit(self, session: Session) -> None:
        if session.get_nested_transaction() is not None:
            return  # a savepoint was released; the outer transaction may still roll back
        rows: list[OutboxMessage] = session.info.pop(_PENDING, [])
        # Rows added inside a rolled-back savepoint were expunged: not persistent, not published.
        committed = [r for r in rows if inspect(r).persistent or inspect(r).detached]
        if committed:
            sent = self.send(committed)
            if sent:
                with self.db.engine.begin() as conn:
                    conn.execute(_mark_sent(sent))

    def _after_rollback(self, session: Session) -> None:
        if session.get_nested_transaction() is None:
            session.info.pop(_PENDING, None)

    def send(self, rows: Sequence[OutboxMessage]) -> list[str]:
        """Send ``rows`` to the broker; returns the ids that were sent (the caller marks them)."""
        sent: list[str] = []
        for row in rows:
            try:
                self.celery.send_task(
                    row.task_name,
                    args=row.args,
                    kwargs=row.kwargs,
                    task_id=row.id,
                    queue=row.queue,
                    headers=dict(row.headers),
                )
            except Exception:
                # Left pending: the relay republishes it once the broker is back.
                log.exception(
                    "outbox publish failed",
                    extra={"action": "outbox.publish_failed", "outbox_id": row.id},
                )
                continue
            sent.append(row.id)
        return sent

    # --- relay ----------------------------------------------------------------------------------

    def relay_pending(self, grace_seconds: float = 10.0, batch: int = 500) -> int:
        """Republish rows committed more than ``grace_seconds`` ago but never marked sent."""
        cutoff = utcnow() - timedelta(seconds=grace_seconds)
        total = 0
        while True:
            with self.db.transaction() as session:
                query = (
                    select(OutboxMessage)
                    .where(OutboxMessage.status == OutboxStatus.PENDING)
                    .where(OutboxMessage.created_at < cutoff)
                    .order_by(OutboxMessage.created_at)
                    .limit(batch)
                )
                if not self.db.is_sqlite:
                    # Two relays never publish the same rows at the same time.
                    query = query.with_for_update(skip_locked=True)
                rows = list(session.scalars(query))
                for row in rows:
                    row.attempts += 1
                sent = self.send(rows) if rows else []
                if sent:
                    # Same transaction: on PostgreSQL these rows are locked by it.
                    session.execute(_mark_sent(sent))
            total += len(sent)
            if len(rows) < batch or not sent:
                break
        if total:
            log.info("outbox relayed", extra={"action": "outbox.relayed", "count": total})
        return total


def _mark_sent(ids: list[str]) -> Any:
    return (
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(ids))
        .values(status=OutboxStatus.SENT, sent_at=utcnow())
    )
