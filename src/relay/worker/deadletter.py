"""Dead letters: tasks that failed fatally or ran out of attempts, kept for inspection and replay.

A replay goes through the outbox in the same transaction that marks the letter replayed, so it is
published exactly when that commits. The new task gets a fresh id (so a fresh attempt count),
keeps the original idempotency key (the effect still happens at most once) and points back to
the letter it came from.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, select
from sqlalchemy.orm import Session

from relay.adapters.sql import Database
from relay.errors import Conflict, NotFound
from relay.events.outbox import Outbox
from relay.models import DeadLetter, utcnow


@dataclass(frozen=True)
class DeadLetterView:
    """A dead letter as callers see it."""

    id: str
    task_id: str
    task_name: str
    queue: str
    tenant_id: str | None
    args: list[Any]
    kwargs: dict[str, Any]
    reason: str
    error: str
    traceback: str | None
    attempts: int
    created_at: datetime
    replayed_at: datetime | None
    replayed_task_id: str | None
    replay_of: str | None

    @classmethod
    def of(cls, row: DeadLetter) -> DeadLetterView:
        return cls(
            id=row.id,
            task_id=row.task_id,
            task_name=row.task_name,
            queue=row.queue,
            tenant_id=row.tenant_id,
            args=list(row.args),
            kwargs=dict(row.kwargs),
            reason=row.reason,
            error=row.error,
            traceback=row.traceback,
            attempts=row.attempts,
            created_at=row.created_at,
            replayed_at=row.replayed_at,
            replayed_task_id=row.replayed_task_id,
            replay_of=row.replay_of,
        )

    def as_dict(self, *, with_traceback: bool = False) -> dict[str, Any]:
        data = {k: v for k, v in vars(self).items() if with_traceback or k != "traceback"}
        for key in ("created_at", "replayed_at"):
            if data[key] is not None:
                data[key] = data[key].isoformat()
        return data


class DeadLetters:
    """Store, list, replay and purge dead letters; ``tenant_id`` scopes every query when given."""

    def __init__(self, db: Database, outbox: Outbox) -> None:
        self.db = db
        self.outbox = outbox

    def bury(
        self,
        *,
        task_id: str,
        task_name: str,
        queue: str,
        tenant_id: str | None,
        args: list[Any],
        kwargs: dict[str, Any],
        headers: dict[str, Any],
        reason: str,
        error: str,
        traceback: str | None,
        attempts: int,
        session: Session | None = None,
    ) -> str:
        """Store a dead letter; returns its id.

        With ``session``, the letter is added to that (open) transaction and commits with it;
        a caller inside a transaction must pass it, since a second transaction would wait on
        the first one's lock (SQLite has one writer).
        """
        row = DeadLetter(
            task_id=task_id,
            task_name=task_name,
            queue=queue,
            tenant_id=tenant_id,
            args=args,
            kwargs=kwargs,
            headers=headers,
            reason=reason,
            error=error[:10_000],
            traceback=traceback,
            attempts=attempts,
            replay_of=headers.get("replay_of"),
        )
        if session is not None:
            session.add(row)
            session.flush()
            return row.id
        with self.db.transaction() as own:
            own.add(row)
            own.flush()
            return row.id

    def _scoped(self, tenant_id: str | None) -> Any:
        query = select(DeadLetter)
        if tenant_id is not None:
            query = query.where(DeadLetter.tenant_id == tenant_id)
        return query

    def list_letters(
        self,
        tenant_id: str | None = None,
        *,
        task_name: str | None = None,
        replayed: bool | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[DeadLetterView]:
        """Newest first."""
        query = self._scoped(tenant_id)
        if task_name:
            query = query.where(DeadLetter.task_name == task_name)
        if replayed is not None:
            query = query.where(
                DeadLetter.replayed_at.is_not(None)
                if replayed
                else DeadLetter.replayed_at.is_(None)
            )
        query = (
            query.order_by(DeadLetter.created_at.desc(), DeadLetter.id).limit(limit).offset(offset)
        )
        with self.db.session() as session:
            return [DeadLetterView.of(row) for row in session.scalars(query)]

    def count(self, tenant_id: str | None = None, *, replayed: bool | None = None) -> int:
        query = select(func.count()).select_from(DeadLetter)
        if tenant_id is not None:
            query = query.where(DeadLetter.tenant_id == tenant_id)
        if replayed is not None:
            query = query.where(
                DeadLetter.replayed_at.is_not(None)
                if replayed
                else DeadLetter.replayed_at.is_(None)
            )
        with self.db.session() as session:
            return int(session.scalar(query) or 0)

    def get(self, letter_id: str, tenant_id: str | None = None) -> DeadLetterView:
        with self.db.session() as session:
            row = session.scalar(self._scoped(tenant_id).where(DeadLetter.id == letter_id))
            if row is None:
                raise NotFound(f"no dead letter {letter_id}")
            return DeadLetterView.of(row)

    def replay(self, letter_id: str, tenant_id: str | None = None) -> str:
        """Re-enqueue the letter's task; returns the new task id. 409 when already replayed."""
        with self.db.transaction() as session:
            query = self._scoped(tenant_id).where(DeadLetter.id == letter_id)
            if not self.db.is_sqlite:
                query = query.with_for_update()
            row = session.scalar(query)
            if row is None:
                raise NotFound(f"no dead letter {letter_id}")
            if row.replayed_at is not None:
                raise Conflict(
                    f"dead letter {letter_id} was already replayed as task {row.replayed_task_id}",
                    details={"replayed_task_id": row.replayed_task_id},
                )
            message = self.outbox.enqueue(
                session,
                row.task_name,
                args=row.args,
                kwargs=row.kwargs,
                tenant_id=row.tenant_id,
                queue=row.queue,
                idempotency_key=f"replay:{row.id}",
                headers={
                    "replay_of": row.id,
                    **(
                        {"idempotency_key": key}
                        if (key := row.headers.get("idempotency_key"))
                        else {}
                    ),
                },
            )
            row.replayed_at = utcnow()
            row.replayed_task_id = message.id
            return message.id

    def pending_ids(self, tenant_id: str | None = None) -> Iterator[str]:
        """Ids of letters not yet replayed, oldest first (for bulk replay)."""
        query = select(DeadLetter.id).where(DeadLetter.replayed_at.is_(None))
        if tenant_id is not None:
            query = query.where(DeadLetter.tenant_id == tenant_id)
        with self.db.session() as session:
            yield from list(session.scalars(query.order_by(DeadLetter.created_at)))

    def purge(self, *, older_than: timedelta | None = None, tenant_id: str | None = None) -> int:
        """Delete letters (optionally only those older than ``older_than``); returns the count."""
        stmt = delete(DeadLetter)
        if older_than is not None:
            stmt = stmt.where(DeadLetter.created_at < utcnow() - older_than)
        if tenant_id is not None:
            stmt = stmt.where(DeadLetter.tenant_id == tenant_id)
        with self.db.transaction() as session:
            result = cast(CursorResult[Any], session.execute(stmt))
            return int(result.rowcount or 0)
