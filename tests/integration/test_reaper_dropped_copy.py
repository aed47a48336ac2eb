"""The reaper and copies the fair scheduler dropped: nothing is left STARTED, nothing wedges.

A fairly scheduled task runs and succeeds on a real worker; then a stale copy of its message
(the old lease token, one retry more, as a retried or redelivered copy carries) reaches the
worker and is dropped by the scheduler. The task's record stays the live copy's. A record left
STARTED by a dropped copy (as older releases wrote them) with no attempts left is finished as a
dead letter within one reap, in the reaper's own transaction: a nested one used to wait on it
forever on SQLite.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from relay.config import Plan
from relay.models import DeadLetter, TaskRecord, TaskStatus, utcnow
from relay.runtime import Runtime
from relay.scheduling.dispatcher import HEADER, FairTicket
from relay.tasks.base import RelayTask
from relay.tasks.reaper import Reaper, ReapReport
from tests.conftest import run_worker
from tests.waiting import wait_until

QUEUE = "dataset"  # a fairly scheduled queue


def _record(runtime: Runtime, task_id: str) -> TaskRecord | None:
    runtime.lifecycle.flush()
    with runtime.db.session() as session:
        row = session.get(TaskRecord, task_id)
        if row is not None:
            session.expunge(row)
        return row


def _reap_once(runtime: Runtime, timeout: float = 20.0) -> ReapReport:
    """One pass in a thread: a pass that does not return within ``timeout`` is wedged."""
    done: list[ReapReport] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            done.append(Reaper(runtime).run())
        except BaseException as exc:  # reported below, with the thread's traceback lost
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "the reaper pass is wedged"
    assert not errors, errors
    return done[0]


def _fair_task(runtime: Runtime, runs: list[str]) -> Callable[..., Any]:
    @runtime.celery.task(name="tests.fair_once", base=RelayTask, bind=True, shared=False)
    def fair_once(self: RelayTask, label: str) -> str:
        runs.append(self.request.id)
        return label

    return fair_once  # type: ignore[no-any-return]


def test_a_dropped_copy_leaves_the_record_to_the_live_copy(runtime: Runtime) -> None:
    runs: list[str] = []
    _fair_task(runtime, runs)
    dispatcher = runtime.dispatcher
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    with run_worker(runtime, queues=[QUEUE], concurrency=1):
        task_id = dispatcher.submit(tenant, Plan.SANDBOX, "tests.fair_once", ["a"], queue=QUEUE)
        wait_until(
            lambda: (r := _record(runtime, task_id)) is not None and r.status == TaskStatus.SUCCESS,
            what="the live copy's success",
        )
        # A stale copy: the lease token it carries is not the live one, and it claims a retry.
        stale = FairTicket(QUEUE, task_id, tenant, "tests.fair_once", uuid.uuid4().hex)
        runtime.celery.send_task(
            "tests.fair_once",
            args=["a"],
            task_id=task_id,
            queue=QUEUE,
            headers={HEADER: stale.header(), "tenant_id": tenant},
            retries=1,
        )
        # The worker takes it and drops it (its queue drains; the body never runs again).
        wait_until(lambda: runtime.redis.llen(QUEUE) == 0, what="the stale copy taken")
        wait_until(lambda: not runtime.lifecycle.running(), what="the stale copy dropped")
    assert runs == [task_id], "the stale copy did not run"
    record = _record(runtime, task_id)
    assert record is not None
    assert record.status == TaskStatus.SUCCESS, "the record is the live copy's"
    assert record.attempts == 1

    # Long after (its heartbeat is old): one reap leaves the finished record alone.
    with runtime.db.transaction() as session:
        row = session.get(TaskRecord, task_id)
        assert row is not None
        row.heartbeat_at = utcnow() - timedelta(hours=1)
    report = _reap_once(runtime)
    assert report.requeued == report.buried == 0
    after = _record(runtime, task_id)
    assert after is not None
    assert after.status == TaskStatus.SUCCESS


def test_a_record_left_started_by_a_dropped_copy_is_finished_within_one_reap(
    runtime: Runtime,
) -> None:
    task_id = f"dropped-{uuid.uuid4().hex[:12]}"
    stale = utcnow() - timedelta(hours=1)
    with runtime.db.transaction() as session:
        session.add(
            TaskRecord(
                id=task_id,
                name="tests.fair_once",
                queue=QUEUE,
                tenant_id=None,
                args=["a"],
                kwargs={},
                headers={},
                status=TaskStatus.STARTED,
                attempts=99,  # no attempts left: the reaper buries it
                worker="gone@host",
                started_at=stale,
                heartbeat_at=stale,
                enqueued_at=stale,
            )
        )
    report = _reap_once(runtime)
    assert report.buried >= 1
    record = _record(runtime, task_id)
    assert record is not None
    assert record.status == TaskStatus.DEAD
    assert record.finished_at is not None
    assert record.error is not None
    assert "gone@host" in record.error
    with runtime.db.session() as session:
        letters = list(session.scalars(select(DeadLetter).where(DeadLetter.task_id == task_id)))
    assert [letter.reason for letter in letters] == ["worker_lost"]
    # The database is free again: a write goes through at once.
    with runtime.db.transaction() as session:
        row = session.get(TaskRecord, task_id)
        assert row is not None
        row.error = "checked"
