"""Transactional outbox: a task enqueued in a transaction is published only if it commits.

``Outbox.enqueue(session, ...)`` inserts an ``OutboxMessage`` row in the caller's transaction (a
Core insert on the session's connection, inside the enclosing savepoint if any: the ORM's unit of
work cost more than the transaction's commit). When the outermost transaction commits, the rows
are published to Celery in order, over one broker connection and on Redis in one pipeline (the
row id is the task id, the idempotency key travels in the headers), and marked sent in batches. A
rolled-back transaction publishes nothing, and nor does a rolled-back savepoint: its rows are
dropped from the session's pending list when it rolls back.

If the process dies between commit and publish, the row stays ``pending``; ``relay_pending()``
(run by beat every few seconds) republishes rows older than a grace period. A row may therefore
be published twice; the task side applies an idempotency key at most once
(``RelayTask.effect()``), so the effect happens once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Table, event, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, SessionTransaction

from relay.adapters import savepoint
from relay.adapters.publisher import TaskPublisher
from relay.adapters.sql import Database
from relay.adapters.tracing import inject
from relay.background import Background, Batcher
from relay.catalog import task_spec
from relay.events.outbox_sender import OutboxSender, Route, SendResult
from relay.models import (
    DeadLetter,
    OutboxMessage,
    OutboxStatus,
    TaskRecord,
    TaskStatus,
    new_id,
    utcnow,
)

log = logging.getLogger(__name__)

_PENDING = "relay_outbox_pending"
# Dead-letter reason of an outbox row that could not be published.
UNPUBLISHABLE = "unpublishable"


@dataclass(frozen=True)
class Enqueue:
    """One task for ``Outbox.enqueue_many`` (the arguments of ``Outbox.enqueue``)."""

    task_name: str
    args: Sequence[Any] = ()
    kwargs: dict[str, Any] | None = None
    tenant_id: str | None = None
    idempotency_key: str | None = None
    queue: str | None = None
    headers: Mapping[str, Any] | None = None


class Outbox:
    """Writes outbox rows and publishes them after commit."""

    def __init__(
        self,
        db: Database,
        publisher: TaskPublisher,
        *,
        route: Route | None = None,
        background: Background | None = None,
    ) -> None:
        self.db = db
        self.sender = OutboxSender(publisher, route)
        self._sent_marks: Batcher[str, dict[str, Any]] = Batcher(
            "outbox-sent", self._mark, interval=0.2, background=background
        )
        self._insert = insert(cast(Table, OutboxMessage.__table__))
        event.listen(db.sessions, "after_commit", self._after_commit)
        event.listen(db.sessions, "after_soft_rollback", self._after_soft_rollback)
        event.listen(db.sessions, "after_transaction_end", self._after_transaction_end)

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
        headers: Mapping[str, Any] | None = None,
    ) -> OutboxMessage:
        """Add a task to ``session``'s transaction; it is published once that commits.

        ``idempotency_key`` defaults to one per row, which is what makes a republished row run
        once. A key shared by two rows is refused by the unique index at flush. ``headers`` are
        extra message headers (JSON values); ``tenant_id`` is reserved. A replay passes the
        original task's ``idempotency_key`` in ``headers``: the task then keeps applying its
        effect at most once, while the new row gets a key of its own.

        The row is inserted at once (a key shared by two rows fails here, with the unique
        index's ``IntegrityError``); the returned object is not attached to ``session``.
        """
        row = outbox_row(
            task_name,
            args=args,
            kwargs=kwargs,
            tenant_id=tenant_id,
            idempotency_key=idempotency_key,
            queue=queue,
            headers=headers,
        )
        self._add(session, [row])
        return row

    def enqueue_many(self, session: Session, tasks: Iterable[Enqueue]) -> list[OutboxMessage]:
        """Add several tasks to ``session``'s transaction at once (see ``enqueue``).

        The rows are inserted together when the session flushes, and published after the commit
        in order over one broker connection: a hundred tasks in one transaction cost far less
        than a hundred transactions of one.
        """
        rows = [
            outbox_row(
                task.task_name,
                args=task.args,
                kwargs=task.kwargs,
                tenant_id=task.tenant_id,
                idempotency_key=task.idempotency_key,
                queue=task.queue,
                headers=task.headers,
            )
            for task in tasks
        ]
        if rows:
            self._add(session, rows)
        return rows

    def _add(self, session: Session, rows: list[OutboxMessage]) -> None:
        """Insert ``rows`` in ``session``'s transaction, remembering the savepoint they are in."""
        savepoint.before_statement(session)
        session.connection().execute(self._insert, [_row_values(row) for row in rows])
        scope = session.get_nested_transaction()
        session.info.setdefault(_PENDING, []).extend((row, scope) for row in rows)

    # --- after commit ---------------------------------------------------------------------------

    def _after_commit(self, session: Session) -> None:
        # after_commit also fires when a savepoint is released; only the outermost commit counts.
        if session.get_nested_transaction() is not None:
            return
        # Rows of a rolled-back savepoint left the list when it rolled back.
        committed = [row for row, _ in session.info.pop(_PENDING, [])]
        if not committed:
            return
        # Runs inside the caller's ``commit()``, which has already succeeded: nothing here may
        # raise into it. What fails stays pending and the relay publishes it later.
        try:
            sent = set(self._send(committed).sent)
            for row in committed:
                if row.id in sent:
                    # Marked in batches: one UPDATE per request would cost as much as the
                    # request's own transaction. A row not yet marked when the process dies is
                    # republished by the relay, and its idempotency key makes that harmless.
                    self._sent_marks.add(row.id, _pending_record(row))
        except Exception:
            log.exception(
                "outbox rows not marked sent; the relay will republish them",
                extra={"action": "outbox.mark_failed", "count": len(committed)},
            )

    def _mark(self, batch: dict[str, dict[str, Any]]) -> None:
        dialect = postgresql if not self.db.is_sqlite else sqlite
        with self.db.engine.begin() as conn:
            conn.execute(_mark_sent(list(batch)))
            # Each published task gets its PENDING record (unless a worker was faster): a task
            # whose record stays PENDING never reached a worker, which the reaper can tell.
            conn.execute(
                dialect.insert(TaskRecord.__table__).on_conflict_do_nothing(index_elements=["id"]),
                list(batch.values()),
            )

    def flush(self) -> int:
        """Write the pending "sent" marks now (tests, shutdown); returns how many."""
        return self._sent_marks.flush()

    def _after_soft_rollback(self, session: Session, rolled_back: SessionTransaction) -> None:
        # A savepoint rolled back: the rows inserted in it (or in savepoints inside it) are gone.
        pending = session.info.get(_PENDING)
        if pending and rolled_back.nested:
            session.info[_PENDING] = [
                (row, scope) for row, scope in pending if not _inside(scope, rolled_back)
            ]

    def _after_transaction_end(self, session: Session, transaction: SessionTransaction) -> None:
        # The outermost transaction ended without commit (rollback, or close): drop its rows.
        # After a commit ``_after_commit`` has popped them already.
        if transaction.parent is None:
            session.info.pop(_PENDING, None)

    def send(self, rows: Sequence[OutboxMessage]) -> list[str]:
        """Hand ``rows`` to the broker; returns the ids that were sent (the caller marks them)."""
        return self._send(rows).sent

    def _send(self, rows: Sequence[OutboxMessage]) -> SendResult:
        return self.sender.send(rows)

    # --- relay ----------------------------------------------------------------------------------

    def relay_pending(
        self,
        grace_seconds: float = 10.0,
        batch: int = 500,
        *,
        max_attempts: int | None = None,
        max_age: float | None = None,
        on_dead: Callable[[list[str]], None] | None = None,
    ) -> int:
        """Republish rows committed more than ``grace_seconds`` ago but never marked sent.

        A row that cannot be published is not retried forever: after ``max_attempts`` failed
        publishes of its own (a broker outage does not count: that is no fault of the row) or
        once older than ``max_age`` seconds, it becomes ``dead`` with a dead letter
        (``unpublishable``; replay re-enqueues it) and ``on_dead`` hears of its id.

        Returns how many rows were sent. The rows are read, published outside any transaction
        (a broker that is down may take its whole timeout per batch, and a transaction held that
        long would stop every writer: on SQLite there is one write lock), then marked in a short
        transaction, only while still pending. Two relays running at once may both publish a
        row; the task's idempotency key makes the second delivery a no-op, as for any republish.
        """
        cutoff = utcnow() - timedelta(seconds=grace_seconds)
        total = 0
        after: tuple[Any, str] | None = None
        while True:
            query = (
                select(OutboxMessage)
                .where(OutboxMessage.status == OutboxStatus.PENDING)
                .where(OutboxMessage.created_at <= cutoff)
                .order_by(OutboxMessage.created_at, OutboxMessage.id)
                .limit(batch)
            )
            if after is not None:
                # Rows a failed send left pending are not read again in this pass.
                query = query.where(
                    (OutboxMessage.created_at > after[0])
                    | ((OutboxMessage.created_at == after[0]) & (OutboxMessage.id > after[1]))
                )
            with self.db.session() as session:
                rows = list(session.scalars(query))
                session.expunge_all()
            result = self._send(rows) if rows else SendResult()
            sent, now = set(result.sent), utcnow()
            dead: list[str] = []
            if rows:
                after = (rows[-1].created_at, rows[-1].id)
                with self.db.transaction() as session:
                    if sent:
                        # Every row published in this pass is marked in one statement.
                        session.execute(
                            update(OutboxMessage)
                            .where(
                                OutboxMessage.id.in_(sent),
                                OutboxMessage.status == OutboxStatus.PENDING,
                            )
                            .values(
                                attempts=OutboxMessage.attempts + 1,
                                status=OutboxStatus.SENT,
                                sent_at=now,
                                last_error=None,
                            )
                        )
                    for row in rows:
                        if row.id in sent:
                            continue
                        ends = _dead_end(row, result, now, max_attempts, max_age)
                        values: dict[str, Any] = {
                            "attempts": OutboxMessage.attempts + 1,
                            "last_error": result.failed.get(row.id),
                        }
                        if ends:
                            values["status"] = OutboxStatus.DEAD
                        changed = session.execute(
                            update(OutboxMessage)
                            .where(
                                OutboxMessage.id == row.id,
                                OutboxMessage.status == OutboxStatus.PENDING,
                            )
                            .values(**values)
                        )
                        if ends and cast(CursorResult[Any], changed).rowcount == 1:
                            session.add(_unpublishable(row, result.failed.get(row.id) or ""))
                            dead.append(row.id)
                if dead:
                    log.error(
                        "outbox rows could not be published; dead-lettered",
                        extra={"action": "outbox.dead", "count": len(dead), "ids": dead[:20]},
                    )
                    if on_dead is not None:
                        on_dead(dead)
                for row in rows:
                    if row.id in sent:
                        self._sent_marks.add(row.id, _pending_record(row))
            total += len(result.sent)
            if len(rows) < batch or result.failed:
                break
        if total:
            log.info("outbox relayed", extra={"action": "outbox.relayed", "count": total})
        return total


def _dead_end(
    row: OutboxMessage,
    result: SendResult,
    now: datetime,
    max_attempts: int | None,
    max_age: float | None,
) -> bool:
    """Whether a row whose publish failed is given up on (its attempts or its age)."""
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
    if max_age is not None and (now - created).total_seconds() > max_age:
        return True
    return (
        max_attempts is not None
        and row.id not in result.outage
        and row.attempts + 1 >= max_attempts
    )


def _unpublishable(row: OutboxMessage, error: str) -> DeadLetter:
    """The dead letter of an outbox row given up on (the row id is its task id)."""
    return DeadLetter(
        task_id=row.id,
        task_name=row.task_name,
        queue=row.queue,
        tenant_id=row.tenant_id,
        args=list(row.args),
        kwargs=dict(row.kwargs),
        headers=dict(row.headers),
        reason=UNPUBLISHABLE,
        error=f"the outbox could not publish it: {error}"[:10_000],
        attempts=row.attempts + 1,
        replay_of=row.headers.get("replay_of"),
    )


def outbox_row(
    task_name: str,
    *,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    tenant_id: str | None = None,
    idempotency_key: str | None = None,
    queue: str | None = None,
    headers: Mapping[str, Any] | None = None,
) -> OutboxMessage:
    """A new PENDING outbox row (not yet in any session); see ``Outbox.enqueue``."""
    row_id = new_id()
    key = idempotency_key or f"outbox:{row_id}"
    message_headers: dict[str, Any] = dict(headers or {})
    message_headers.setdefault("idempotency_key", key)
    message_headers.pop("tenant_id", None)
    # The producer's trace context is stored with the row: a later publish joins its trace.
    inject(message_headers, replace=False)
    if tenant_id is not None:
        message_headers["tenant_id"] = tenant_id
    return OutboxMessage(
        id=row_id,
        tenant_id=tenant_id,
        task_name=task_name,
        queue=queue or task_spec(task_name).queue,
        args=list(args),
        kwargs=dict(kwargs or {}),
        headers=message_headers,
        idempotency_key=key,
        status=OutboxStatus.PENDING,
        attempts=0,
        created_at=utcnow(),
    )


def _inside(scope: SessionTransaction | None, savepoint: SessionTransaction) -> bool:
    """Whether ``scope`` (a row's savepoint, ``None`` for the outermost transaction) is
    ``savepoint`` or nested in it."""
    while scope is not None:
        if scope is savepoint:
            return True
        scope = scope.parent
    return False


_COLUMNS = tuple(column.key for column in OutboxMessage.__table__.columns)


def _row_values(row: OutboxMessage) -> dict[str, Any]:
    """The column values of a new row (every column: one statement shape for every row)."""
    values = row.__dict__
    return {key: values.get(key) for key in _COLUMNS}


def _pending_record(row: OutboxMessage) -> dict[str, Any]:
    """The PENDING task record of a published row (the row id is the task id)."""
    return {
        "id": row.id,
        "name": row.task_name,
        "queue": row.queue,
        "tenant_id": row.tenant_id,
        "args": list(row.args),
        "kwargs": dict(row.kwargs),
        "headers": dict(row.headers),
        "idempotency_key": row.headers.get("idempotency_key", row.idempotency_key),
        "status": TaskStatus.PENDING,
        "attempts": 0,
        "enqueued_at": row.created_at,
        "updated_at": utcnow(),
    }


def _mark_sent(ids: list[str]) -> Any:
    return (
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(ids))
        .where(OutboxMessage.status == OutboxStatus.PENDING)
        .values(status=OutboxStatus.SENT, sent_at=utcnow())
    )
