"""RECEIVED is written only for deliveries still going when the records are flushed."""

from __future__ import annotations

from pathlib import Path

from relay.adapters.sql import Database
from relay.background import Background
from relay.migrations import upgrade
from relay.models import TaskRecord, TaskStatus
from relay.worker.lifecycle import TaskLifecycle


def _lifecycle(tmp_path: Path) -> tuple[TaskLifecycle, Database, Background]:
    url = f"sqlite:///{tmp_path / 'relay.db'}"
    upgrade(url)
    db = Database(url)
    background = Background()
    return TaskLifecycle(db, outbox=None, background=background), db, background  # type: ignore[arg-type]


def test_a_delivery_that_ended_before_the_flush_leaves_no_received_record(tmp_path: Path) -> None:
    lifecycle, db, background = _lifecycle(tmp_path)
    ids = ("short", "long")
    for task_id in ids:
        lifecycle.received(
            task_id=task_id, name="relay.ping", queue="monitor", attempt=1, worker="w"
        )
    lifecycle.delivered("short")  # the pool process records its own outcome
    lifecycle.flush()
    with db.session() as session:
        assert session.get(TaskRecord, "short") is None
        record = session.get(TaskRecord, "long")
        assert record is not None
        assert record.status == TaskStatus.RECEIVED
    # Once written, a RECEIVED stays: the end of the delivery only drops what is buffered.
    lifecycle.delivered("long")
    lifecycle.flush()
    with db.session() as session:
        assert session.get(TaskRecord, "long") is not None
    background.stop_all()
    db.close()
