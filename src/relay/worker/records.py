"""Task records: every task's lifecycle in the ``task_records`` table, written in batches.

A synchronous transaction per transition would cost more than a small task itself, so each
process buffers transitions and a background thread upserts them every ``interval`` seconds (and
at shutdown). Transitions of one task merge in the buffer. The upsert never moves a record
backwards: a later attempt wins over an earlier one, and within one attempt a later state wins
(a delayed RETRY flush cannot overwrite the STARTED of the next attempt).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import case
from sqlalchemy.dialects import postgresql, sqlite

from relay.adapters.sql import Database
from relay.background import Background, Batcher
from relay.models import TaskRecord, TaskStatus, utcnow

log = logging.getLogger(__name__)

# Order of states within one attempt; a record only moves forward.
_RANK = {
    TaskStatus.PENDING: 0,
    TaskStatus.RECEIVED: 1,
    TaskStatus.STARTED: 2,
    TaskStatus.RETRY: 3,
    TaskStatus.SUCCESS: 4,
    TaskStatus.FAILURE: 4,
    TaskStatus.DEAD: 4,
}
_COLUMNS = {c.name for c in TaskRecord.__table__.columns}
_REQUIRED = ("name", "queue", "status")


def _rank(column: Any) -> Any:
    return case({status.value: rank for status, rank in _RANK.items()}, value=column, else_=0)


def _forward(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """True when ``new`` is a later transition than ``old`` (later attempt, or later state)."""
    old_attempt, new_attempt = old.get("attempts", 0), new.get("attempts", old.get("attempts", 0))
    if new_attempt != old_attempt:
        return bool(new_attempt > old_attempt)
    return _RANK[new.get("status", old["status"])] >= _RANK[old["status"]]


def _merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    return {**old, **new} if _forward(old, new) else {**new, **old}


class RecordWriter:
    """Buffers task-record transitions and upserts them in batches from a background thread."""

    def __init__(
        self, db: Database, interval: float = 0.5, *, background: Background | None = None
    ) -> None:
        self.db = db
        self._batch: Batcher[str, dict[str, Any]] = Batcher(
            "task-records", self._apply, interval=interval, merge=_merge, background=background
        )

    def record(self, task_id: str, **fields: Any) -> None:
        """Queue a transition for ``task_id``; ``status`` and identity fields as known."""
        unknown = set(fields) - _COLUMNS
        if unknown:
            raise ValueError(f"unknown task record fields: {sorted(unknown)}")
        self._batch.add(task_id, {"id": task_id, "updated_at": utcnow(), **fields})

    def withdraw(self, task_id: str) -> bool:
        """Drop ``task_id``'s buffered transitions (not written yet); True when there were."""
        return self._batch.discard(task_id)

    def flush(self) -> int:
        """Write every buffered transition now; returns how many records were written."""
        return self._batch.flush()

    def _apply(self, batch: dict[str, dict[str, Any]]) -> None:
        rows = [r for r in batch.values() if all(r.get(k) is not None for k in _REQUIRED)]
        if rows:
            self._upsert(rows)

    def _upsert(self, rows: list[dict[str, Any]]) -> None:
        # Group by the set of columns given, so each statement binds the same parameters. A new
        # record gets defaults for what a transition does not know; an existing one is only
        # updated in the columns the transition carries (a RECEIVED never blanks the args).
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in rows:
            groups.setdefault(tuple(sorted(row)), []).append(
                {"attempts": 0, "args": [], "kwargs": {}, "enqueued_at": row["updated_at"], **row}
            )
        dialect = postgresql if not self.db.is_sqlite else sqlite
        table = TaskRecord.__table__
        with self.db.engine.begin() as conn:
            for given, group in groups.items():
                stmt = dialect.insert(table)
                updates = {c: stmt.excluded[c] for c in given if c not in ("id", "enqueued_at")}
                forward = (table.c.attempts < stmt.excluded.attempts) | (
                    (table.c.attempts == stmt.excluded.attempts)
                    & (_rank(table.c.status) <= _rank(stmt.excluded.status))
                )
                conn.execute(
                    stmt.on_conflict_do_update(index_elements=["id"], set_=updates, where=forward),
                    group,
                )
