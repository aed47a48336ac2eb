"""The transactional outbox end to end: real database, real broker, real worker.

The task used here has a deliberately non-idempotent effect (it inserts a new row on every run)
behind ``RelayTask.effect()``, so "the effect happened exactly once" is a row count.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from celery.signals import after_task_publish, task_postrun
from sqlalchemy import func, select

from relay.adapters.sql import Database
from relay.events.outbox import Outbox
from relay.models import Dataset, OutboxMessage, OutboxStatus, ProcessedKey, Tenant
from relay.monitoring.queues import QueueMonitor
from relay.runtime import Runtime
from relay.tasks.base import RelayTask
from tests.conftest import run_worker
from tests.waiting import lock_waiters, wait_until

EFFECT_TASK = "tests.outbox.record_effect"
QUEUE = "monitor"


class Deliveries:
    """Task runs and publishes seen in this process (the worker runs in-process)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.published: list[str] = []
        self.runs: dict[str, list[Any]] = {}

    def on_publish(self, sender: Any = None, headers: Any = None, **_: Any) -> None:
        with self.lock:
            self.published.append(str((headers or {}).get("id")))

    def on_postrun(self, task_id: str | None = None, retval: Any = None, **_: Any) -> None:
        with self.lock:
            self.runs.setdefault(str(task_id), []).append(retval)

    def runs_of(self, task_id: str) -> list[Any]:
        with self.lock:
            return list(self.runs.get(task_id, []))


@pytest.fixture
def deliveries() -> Iterator[Deliveries]:
    seen = Deliveries()
    after_task_publish.connect(seen.on_publish, weak=False)
    task_postrun.connect(seen.on_postrun, weak=False)
    yield seen
    after_task_publish.disconnect(seen.on_publish)
    task_postrun.disconnect(seen.on_postrun)


@pytest.fixture
def effect_task(runtime: Runtime) -> Any:
    """A test task on the runtime's Celery app only (``shared=False``: no other app sees it)."""

    def record_effect(self: RelayTask, tenant_id: str, marker: str) -> dict[str, Any]:
        with self.effect() as session:
            outcome = "skipped"
            if session is not None:
                session.add(Dataset(tenant_id=tenant_id, name=marker))
                outcome = "applied"
        return {
            "outcome": outcome,
            "key": self.idempotency_key,
            "tenant_id": self.tenant_id,
            "request_headers": dict(self.request.headers or {}),
            "request_attribute": getattr(self.request, "idempotency_key", None),
        }

    return runtime.celery.task(name=EFFECT_TASK, base=RelayTask, bind=True, shared=False)(
        record_effect
    )


@pytest.fixture
def tenant(runtime: Runtime) -> str:
    with runtime.db.transaction() as session:
        row = Tenant(name="acme")
        session.add(row)
        session.flush()
        return row.id


def effects(runtime: Runtime, marker: str) -> int:
    with runtime.db.session() as session:
        return int(session.scalar(select(func.count()).where(Dataset.name == marker)) or 0)


def outbox_row(runtime: Runtime, row_id: str) -> OutboxMessage | None:
    with runtime.db.session() as session:
        return session.get(OutboxMessage, row_id)


def enqueue(runtime: Runtime, session: Any, tenant: str, marker: str) -> OutboxMessage:
    return runtime.outbox.enqueue(
        session, EFFECT_TASK, args=[tenant, marker], tenant_id=tenant, queue=QUEUE
    )


def test_published_after_commit_and_run_once(
    runtime: Runtime, tenant: str, effect_task: Any, deliveries: Deliveries, worker: Any
) -> None:
    with runtime.db.transaction() as session:
        row = enqueue(runtime, session, tenant, "committed")
        session.flush()
        assert row.id not in deliveries.published, "published before the commit"
    assert row.id in deliveries.published

    result = runtime.celery.AsyncResult(row.id).get(timeout=30)
    assert result["outcome"] == "applied"
    # How Celery 5.7 surfaces custom headers on the worker: both in request.headers and as
    # request attributes; RelayTask reads the dict first.
    assert result["key"] == f"outbox:{row.id}" == row.idempotency_key
    assert result["request_headers"]["idempotency_key"] == row.idempotency_key
    assert result["request_attribute"] == row.idempotency_key
    assert result["tenant_id"] == tenant
    assert effects(runtime, "committed") == 1
    stored = wait_until(
        lambda: (r := outbox_row(runtime, row.id)) and r.status == OutboxStatus.SENT and r,
        what="row marked sent",
    )
    assert stored.sent_at is not None
    assert deliveries.runs_of(row.id) == [result]


def test_rollback_publishes_nothing_and_leaves_no_row(
    runtime: Runtime, tenant: str, deliveries: Deliveries
) -> None:
    rows: list[OutboxMessage] = []

    def failing_request() -> None:
        with runtime.db.transaction() as session:
            rows.append(enqueue(runtime, session, tenant, "rolled-back"))
            session.flush()
            raise RuntimeError("the request failed")

    with pytest.raises(RuntimeError):
        failing_request()
    (row,) = rows
    assert row.id not in deliveries.published
    assert outbox_row(runtime, row.id) is None
    assert QueueMonitor(runtime.celery, runtime.redis).lengths()[QUEUE] == 0


def test_rows_of_a_rolled_back_savepoint_are_not_published(
    runtime: Runtime, tenant: str, effect_task: Any, deliveries: Deliveries, worker: Any
) -> None:
    rows: list[OutboxMessage] = []

    def failing_savepoint(session: Any) -> None:
        with session.begin_nested():
            rows.append(enqueue(runtime, session, tenant, "dropped"))
            session.flush()
            raise RuntimeError("a receiver failed")

    with runtime.db.transaction() as session:
        kept = enqueue(runtime, session, tenant, "kept")
        with pytest.raises(RuntimeError):
            failing_savepoint(session)
        (dropped,) = rows
        with session.begin_nested():
            released = enqueue(runtime, session, tenant, "released")
    assert kept.id in deliveries.published
    assert released.id in deliveries.published
    assert dropped.id not in deliveries.published
    assert outbox_row(runtime, dropped.id) is None
    for row in (kept, released):
        assert runtime.celery.AsyncResult(row.id).get(timeout=30)["outcome"] == "applied"
    assert (effects(runtime, "kept"), effects(runtime, "released")) == (1, 1)
    assert effects(runtime, "dropped") == 0


def test_same_row_published_twice_applies_its_effect_once(
    runtime: Runtime, tenant: str, effect_task: Any, deliveries: Deliveries, worker: Any
) -> None:
    with runtime.db.transaction() as session:
        row = enqueue(runtime, session, tenant, "twice")
    # The relay lost the race with the after-commit publish (or a worker died after the effect
    # but before the ack): the same message arrives again.
    assert runtime.outbox.send([row]) == [row.id]
    runs = wait_until(lambda: len(r := deliveries.runs_of(row.id)) == 2 and r, what="two runs")
    assert sorted(run["outcome"] for run in runs) == ["applied", "skipped"]
    assert effects(runtime, "twice") == 1
    with runtime.db.session() as session:
        keys = session.scalars(
            select(ProcessedKey).where(ProcessedKey.idempotency_key == row.idempotency_key)
        ).all()
    assert [k.task_name for k in keys] == [EFFECT_TASK]


def commit_during_broker_outage(runtime: Runtime, tenant: str, marker: str) -> OutboxMessage:
    """Enqueue and commit from a second "process" whose broker is down; the commit succeeds."""
    broken = Celery("broken", broker="redis://127.0.0.1:1/0", set_as_current=False)
    broken.conf.update(task_publish_retry=False, broker_connection_timeout=0.5)
    db = Database(runtime.settings.database_url)
    try:
        with db.transaction() as session:
            return Outbox(db, broken).enqueue(
                session, EFFECT_TASK, args=[tenant, marker], tenant_id=tenant, queue=QUEUE
            )
    finally:
        db.close()


def test_a_broker_outage_keeps_the_row_for_the_relay(
    runtime: Runtime, tenant: str, effect_task: Any, deliveries: Deliveries
) -> None:
    row = commit_during_broker_outage(runtime, tenant, "outage")
    stored = outbox_row(runtime, row.id)
    assert stored is not None
    assert stored.status == OutboxStatus.PENDING
    assert runtime.outbox.relay_pending(grace_seconds=3600) == 0, "still within the grace period"

    with run_worker(runtime):
        assert runtime.outbox.relay_pending(grace_seconds=0) == 1
        result = runtime.celery.AsyncResult(row.id).get(timeout=30)
    assert result["outcome"] == "applied"
    stored = outbox_row(runtime, row.id)
    assert stored is not None
    assert (stored.status, stored.attempts) == (OutboxStatus.SENT, 1)
    assert runtime.outbox.relay_pending(grace_seconds=0) == 0
    assert effects(runtime, "outage") == 1


CRASHING_PRODUCER = textwrap.dedent(
    """
    import os, signal, sys
    from sqlalchemy import event
    from relay.composition import create_runtime
    from relay.config import load_settings

    runtime = create_runtime(load_settings())

    def die_after_commit(session):
        # Runs before the outbox's own after_commit listener: the commit is durable, the
        # publish never happens. SIGKILL, so no cleanup code of any kind runs.
        os.kill(os.getpid(), signal.SIGKILL)

    event.listen(runtime.db.sessions, "after_commit", die_after_commit, insert=True)
    with runtime.db.transaction() as session:
        row = runtime.outbox.enqueue(
            session, sys.argv[1], args=[sys.argv[2], "crash"], tenant_id=sys.argv[2],
            queue=sys.argv[3],
        )
        print(row.id, flush=True)
    print("survived", flush=True)
    """
)


def test_crash_between_commit_and_publish_is_recovered_by_the_relay(
    runtime: Runtime, tenant: str, effect_task: Any, deliveries: Deliveries
) -> None:
    env = {
        **os.environ,
        "RELAY_DATABASE_URL": runtime.settings.database_url,
        "RELAY_REDIS_URL": runtime.redis_url,
        "RELAY_VAR_DIR": str(runtime.settings.var_dir),
    }
    proc = subprocess.run(
        [sys.executable, "-c", CRASHING_PRODUCER, EFFECT_TASK, tenant, QUEUE],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert "survived" not in proc.stdout
    row_id = proc.stdout.split()[0]

    stored = outbox_row(runtime, row_id)
    assert stored is not None, "the commit happened before the kill"
    assert stored.status == OutboxStatus.PENDING
    monitor = QueueMonitor(runtime.celery, runtime.redis)
    assert monitor.lengths()[QUEUE] == 0, "nothing reached the broker"

    assert runtime.outbox.relay_pending(grace_seconds=0) == 1
    assert monitor.lengths()[QUEUE] == 1
    with run_worker(runtime):
        result = runtime.celery.AsyncResult(row_id).get(timeout=30)
        assert result["outcome"] == "applied"
        assert result["key"] == f"outbox:{row_id}"
        # A second relay pass finds nothing left to publish.
        assert runtime.outbox.relay_pending(grace_seconds=0) == 0
    assert effects(runtime, "crash") == 1
    assert deliveries.runs_of(row_id) == [result]


def test_relay_task_is_scheduled_and_uses_the_grace_setting(
    runtime: Runtime, tenant: str, effect_task: Any, worker: Any
) -> None:
    schedule = runtime.celery.conf.beat_schedule
    entry = next(e for e in schedule.values() if e["task"] == "relay.outbox.relay_pending")
    assert entry["schedule"].total_seconds() == 5
    assert runtime.settings.celery.outbox_grace_seconds == 10

    row = commit_during_broker_outage(runtime, tenant, "beat")
    # Within the 10 s grace period the scheduled relay leaves the row alone...
    sent = runtime.celery.send_task("relay.outbox.relay_pending").get(timeout=30)
    assert sent == 0
    # ...and publishes it once the row is older than that.
    with runtime.db.transaction() as session:
        stored = session.get(OutboxMessage, row.id)
        assert stored is not None
        stored.created_at = stored.created_at.replace(year=stored.created_at.year - 1)
    assert runtime.celery.send_task("relay.outbox.relay_pending").get(timeout=30) == 1
    assert runtime.celery.AsyncResult(row.id).get(timeout=30)["outcome"] == "applied"


def test_a_concurrent_duplicate_waits_for_the_first_and_skips(
    runtime: Runtime, tenant: str, effect_task: Any, deliveries: Deliveries, worker: Any
) -> None:
    """The duplicate arrives while the first delivery's effect is still uncommitted."""
    key = "concurrent-key"
    with runtime.db.transaction() as first:
        # The first delivery, mid-effect: its key and effect are written, not yet committed.
        first.add(ProcessedKey(idempotency_key=key, task_name=EFFECT_TASK))
        first.add(Dataset(tenant_id=tenant, name="concurrent"))
        first.flush()
        duplicate = runtime.celery.send_task(
            EFFECT_TASK,
            args=[tenant, "concurrent"],
            queue=QUEUE,
            headers={"idempotency_key": key, "tenant_id": tenant},
        )
        # PostgreSQL: the duplicate's INSERT of the key blocks on the uncommitted one.
        wait_until(lambda: lock_waiters(runtime), what="the duplicate to block on the key")
    assert duplicate.get(timeout=30)["outcome"] == "skipped"
    assert effects(runtime, "concurrent") == 1


@pytest.fixture
def flaky_task(runtime: Runtime) -> Any:
    """Writes its effect, then fails when told to (registered before the worker starts)."""

    def flaky(self: RelayTask, tenant_id: str, fail: bool) -> str:
        with self.effect() as session:
            if session is None:
                return "skipped"
            session.add(Dataset(tenant_id=tenant_id, name="flaky"))
            session.flush()
            if fail:
                raise RuntimeError("failed after writing")
        return "applied"

    return runtime.celery.task(name="tests.outbox.flaky", base=RelayTask, bind=True, shared=False)(
        flaky
    )


def test_a_failed_effect_leaves_no_key_so_a_retry_applies_it(
    runtime: Runtime, tenant: str, flaky_task: Any, worker: Any
) -> None:
    headers = {"idempotency_key": "flaky-key", "tenant_id": tenant}
    failed = runtime.celery.send_task(
        "tests.outbox.flaky", args=[tenant, True], queue=QUEUE, headers=headers
    )
    with pytest.raises(RuntimeError, match="failed after writing"):
        failed.get(timeout=30)
    assert effects(runtime, "flaky") == 0
    with runtime.db.session() as session:
        assert session.get(ProcessedKey, "flaky-key") is None
    retried = runtime.celery.send_task(
        "tests.outbox.flaky", args=[tenant, False], queue=QUEUE, headers=headers
    )
    assert retried.get(timeout=30) == "applied"
    assert effects(runtime, "flaky") == 1
