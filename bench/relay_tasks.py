"""The relay side of the task benchmarks, loaded into the relay worker with ``-I``.

- ``bench.noop``: a relay task that does nothing (records, retry policy, metrics around it);
- ``bench.row``: writes one row of ``bench_rows`` inside ``effect()``, so the row is written once
  per idempotency key however often the message is delivered (exactly-once effect).

The plain-Celery counterparts are in ``bench.plain_app`` (the row task there is at-least-once).
"""

from __future__ import annotations

from sqlalchemy import text

import bench.latency_probe  # noqa: F401  (the same start/finish probe as the plain worker)
from relay.catalog import TaskSpec
from relay.tasks.base import RelayTask, relay_task

QUEUE = "monitor"  # a queue relay workers know; nothing else runs there in the bench
NOOP = TaskSpec("bench.noop", QUEUE)
ROW = TaskSpec("bench.row", QUEUE)
ROWS_TABLE = "CREATE TABLE IF NOT EXISTS bench_rows (id varchar(64) PRIMARY KEY, label text)"
INSERT_ROW = "INSERT INTO bench_rows (id, label) VALUES (:id, :label)"


@relay_task(NOOP)
def noop(self: RelayTask, label: str = "noop") -> bool:
    """Nothing but the task machinery around it."""
    return True


@relay_task(ROW)
def row(self: RelayTask, label: str = "row") -> bool:
    """One row per idempotency key; False for a duplicate delivery."""
    with self.effect() as session:
        if session is None:
            return False
        # The same Core statement as plain Celery's task, on the effect's connection.
        session.connection().execute(text(INSERT_ROW), {"id": self.request.id, "label": label})
        return True
