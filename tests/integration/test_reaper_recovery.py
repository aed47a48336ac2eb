"""The reaper sends again what a dead worker held or an outage left behind, also on a busy queue,
and leaves alone what still waits its turn."""

from __future__ import annotations

import time
from datetime import UTC, timedelta

from relay.models import TaskRecord, TaskStatus, utcnow
from relay.runtime import Runtime
from relay.tasks.reaper import Reaper

QUEUE = "monitor"


def _record(runtime: Runtime, task_id: str, status: TaskStatus, age: float) -> None:
    with runtime.db.transaction() as session:
        session.add(
            TaskRecord(
                id=task_id,
                name="relay.ping",
                queue=QUEUE,
                args=["x"],
                kwargs={},
                headers={},
                status=status,
                attempts=1,
                updated_at=utcnow() - timedelta(seconds=age),
            )
        )


def _status(runtime: Runtime, task_id: str) -> tuple[str, float]:
    """The record's status and the seconds since its last update."""
    with runtime.db.session() as session:
        row = session.get(TaskRecord, task_id)
        assert row is not None
        return row.status, time.time() - row.updated_at.replace(tzinfo=UTC).timestamp()


def test_lost_messages_come_back_on_a_busy_queue(runtime: Runtime) -> None:
    _record(runtime, "lost-before-the-backlog", TaskStatus.PENDING, age=120)
    _record(runtime, "retry-never-published", TaskStatus.RETRY, age=3600)
    # A busy queue: fresh messages wait in it (no worker runs in this test).
    for n in range(20):
        runtime.celery.send_task("relay.ping", args=[f"busy {n}"], queue=QUEUE)
    # This one was published with the backlog and still waits its turn: not lost.
    runtime.celery.send_task("relay.ping", args=["waiting"], task_id="waiting", queue=QUEUE)
    _record(runtime, "waiting", TaskStatus.PENDING, age=0)
    before = runtime.queues.length(QUEUE)

    report = Reaper(runtime).run()

    assert report.resent == 2
    assert runtime.queues.length(QUEUE) == before + 2
    assert _status(runtime, "lost-before-the-backlog")[1] < 30
    assert _status(runtime, "retry-never-published")[0] == TaskStatus.PENDING
    # The lost-after window (60 s by default) has not passed for the waiting one, and even once
    # it has, its message is still in the queue.
    runtime.settings = runtime.settings.model_copy(
        update={"celery": runtime.settings.celery.model_copy(update={"lost_after": 0.001})}
    )
    assert Reaper(runtime).run().resent == 0
