"""The baseline: a plain Celery app, configured like relay's workers.

Started by ``bench_tasks`` as ``celery -A bench.plain_app worker``; broker and backend come from
``BENCH_BROKER`` / ``BENCH_BACKEND`` so both sides use the same Redis. The result and event
settings are relay's (results stored and extended, no STARTED state in the backend, task events
sent), so both sides
do the same broker and backend work and the difference is relay's own. ``plain.row`` writes one
row with an autocommit insert: at-least-once (a redelivery writes again).
"""

from __future__ import annotations

import os
import uuid

from celery import Celery
from celery.signals import worker_process_init
from sqlalchemy import Engine, create_engine, text

import bench.latency_probe  # noqa: F401  (same start probe as the relay worker)

app = Celery(
    "plain",
    broker=os.environ.get("BENCH_BROKER", "redis://127.0.0.1:6379/14"),
    backend=os.environ.get("BENCH_BACKEND", "redis://127.0.0.1:6379/14"),
)
app.conf.update(
    task_default_queue="plain_bench",
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    worker_hijack_root_logger=False,
    result_extended=True,
    task_track_started=False,  # relay's setting (relay.adapters.broker)
    worker_send_task_events=True,
    task_send_sent_event=True,
    task_serializer="json",
    result_serializer="json",
)
_engine: Engine | None = None


@worker_process_init.connect(weak=False)
def _fresh_engine(**_: object) -> None:
    global _engine
    _engine = None


def _db() -> Engine:
    global _engine
    if _engine is None:
        _engine = create_engine(os.environ["BENCH_DATABASE_URL"], pool_size=1)
    return _engine


@app.task(name="plain.noop")
def noop(label: str = "noop") -> bool:
    return True


@app.task(name="plain.row")
def row(label: str = "row") -> bool:
    with _db().begin() as conn:
        conn.execute(
            text("INSERT INTO bench_rows (id, label) VALUES (:id, :label)"),
            {"id": str(uuid.uuid4()), "label": label},
        )
    return True
