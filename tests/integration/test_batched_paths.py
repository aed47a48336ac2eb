"""Redis effects claimed in Redis, and outbox rows enqueued and published in batches."""

from __future__ import annotations

from typing import Any

import pytest
from celery.signals import after_task_publish
from sqlalchemy import func, select

from relay.events.outbox import Enqueue
from relay.models import OutboxMessage, OutboxStatus, WorkflowNodeExecution
from relay.retry import FatalTaskError, RetryableTaskError
from relay.runtime import Runtime
from relay.tasks.base import RelayTask
from relay.tasks.workflow_storage import store_node_executions
from tests.integration.test_workflow_storage_task import (
    SAVE_RUN,
    T0,
    call,
    new_tenant,
    node_payload,
    run_payload,
)

COUNTER = "tests:redis-effect:count"


@pytest.fixture
def counting_task(runtime: Runtime) -> Any:
    """Increments a Redis counter once per idempotency key; ``interfere`` claims the key first
    from another client while the effect is being queued (a concurrent duplicate)."""

    def count(self: RelayTask, interfere: bool = False, fail: bool = False) -> str:
        with self.redis_effect() as pipe:
            if pipe is None:
                return "skipped"
            pipe.incr(COUNTER)
            if interfere:
                runtime.redis.set("relay:effect:" + str(self.effect_key()), "other")
            if fail:
                raise RuntimeError("failed while queueing")
        return "done"

    return runtime.celery.task(name="tests.redis_effect", base=RelayTask, bind=True, shared=False)(
        count
    )


def _count(runtime: Runtime) -> int:
    return int(runtime.redis.get(COUNTER) or 0)


def test_a_redis_effect_applies_once_per_key_and_its_claim_expires(
    runtime: Runtime, counting_task: Any
) -> None:
    headers = {"idempotency_key": "redis-key-1"}
    assert counting_task.apply(headers=headers).get() == "done"
    assert counting_task.apply(headers=headers).get() == "skipped"
    assert _count(runtime) == 1
    assert 0 < runtime.redis.ttl("relay:effect:redis-key-1") <= 7 * 86400
    assert counting_task.apply(headers={"idempotency_key": "redis-key-2"}).get() == "done"
    assert _count(runtime) == 2


def test_a_concurrent_claim_drops_this_deliverys_commands(
    runtime: Runtime, counting_task: Any
) -> None:
    counting_task.apply(kwargs={"interfere": True}, headers={"idempotency_key": "raced"}).get()
    assert _count(runtime) == 0
    assert runtime.redis.get("relay:effect:raced") == "other"


def test_a_failing_redis_effect_applies_and_claims_nothing(
    runtime: Runtime, counting_task: Any
) -> None:
    result = counting_task.apply(kwargs={"fail": True}, headers={"idempotency_key": "failing"})
    assert result.failed()
    assert _count(runtime) == 0
    assert not runtime.redis.exists("relay:effect:failing")


def test_enqueue_many_publishes_every_row_after_commit_in_order(runtime: Runtime) -> None:
    published: list[str] = []

    def seen(headers: Any = None, **_: Any) -> None:
        published.append(str((headers or {}).get("id")))

    after_task_publish.connect(seen, weak=False)
    try:

        def rolled_back() -> None:
            with runtime.db.transaction() as session:
                runtime.outbox.enqueue_many(
                    session, [Enqueue("relay.canary", args=[f"x{i}"]) for i in range(3)]
                )
                raise RuntimeError("rolled back")

        with pytest.raises(RuntimeError):
            rolled_back()
        assert published == []
        with runtime.db.transaction() as session:
            rows = runtime.outbox.enqueue_many(
                session,
                [
                    Enqueue("relay.canary", args=[f"c{i}"], idempotency_key=f"k{i}")
                    for i in range(5)
                ],
            )
            assert published == []
        ids = [row.id for row in rows]
        assert published == ids
        runtime.outbox.flush()
        with runtime.db.session() as session:
            stored = session.scalars(select(OutboxMessage).where(OutboxMessage.id.in_(ids))).all()
        assert {r.status for r in stored} == {OutboxStatus.SENT}
        assert sorted(r.idempotency_key for r in stored) == [f"k{i}" for i in range(5)]
    finally:
        after_task_publish.disconnect(seen)


def test_the_relay_sweep_marks_a_whole_batch_sent(runtime: Runtime) -> None:
    with runtime.db.transaction() as session:
        rows = runtime.outbox.enqueue_many(
            session, [Enqueue("relay.canary", args=[f"s{i}"]) for i in range(7)]
        )
        # As if the process died between commit and publish: nothing is published now.
        session.info.pop("relay_outbox_pending")
    assert runtime.outbox.relay_pending(grace_seconds=0, batch=3) == 7
    with runtime.db.session() as session:
        stored = session.scalars(
            select(OutboxMessage).where(OutboxMessage.id.in_([r.id for r in rows]))
        ).all()
    assert {(r.status, r.attempts) for r in stored} == {(OutboxStatus.SENT, 1)}


def test_node_executions_stored_in_one_batch_follow_the_ordering_rule(runtime: Runtime) -> None:
    tenant = new_tenant(runtime)
    call(runtime, SAVE_RUN, run_payload(tenant), tenant)
    done = node_payload(tenant, id="n-1", status="succeeded", finished_at=T0.isoformat())
    batch = [
        node_payload(tenant, id="n-1"),
        done,
        node_payload(tenant, id="n-1"),  # older than the stored state: ignored
        *(node_payload(tenant, id=f"n-{i}", index=i) for i in range(2, 6)),
    ]
    outcomes = store_node_executions(runtime.db, batch, tenant)
    assert outcomes == {"inserted": 5, "updated": 1, "ignored": 1}
    with runtime.db.session() as session:
        rows = session.scalars(select(WorkflowNodeExecution).order_by(WorkflowNodeExecution.id))
        assert [(r.id, r.status) for r in rows] == [
            ("n-1", "succeeded"),
            *((f"n-{i}", "running") for i in range(2, 6)),
        ]
    again = store_node_executions(runtime.db, [done, node_payload(tenant, id="n-2", index=2)])
    assert again == {"updated": 2}


def test_a_node_batch_for_another_tenant_or_a_missing_run_changes_nothing(
    runtime: Runtime,
) -> None:
    tenant, other = new_tenant(runtime), new_tenant(runtime)
    call(runtime, SAVE_RUN, run_payload(tenant), tenant)
    with pytest.raises(FatalTaskError):
        store_node_executions(runtime.db, [node_payload(tenant, id="a"), node_payload(other)])
    with pytest.raises(FatalTaskError):
        store_node_executions(runtime.db, [node_payload(tenant, id="a")], other)
    with pytest.raises(RetryableTaskError):
        store_node_executions(
            runtime.db, [node_payload(tenant, id="a"), node_payload(tenant, workflow_run_id="x")]
        )
    with runtime.db.session() as session:
        assert session.scalar(select(func.count()).select_from(WorkflowNodeExecution)) == 0


def test_the_batch_storage_task_applies_once_per_key_and_checks_the_tenant(
    runtime: Runtime,
) -> None:
    tenant = new_tenant(runtime)
    call(runtime, SAVE_RUN, run_payload(tenant), tenant)
    task = runtime.celery.tasks["relay.workflow_storage.save_node_executions"]
    batch = [node_payload(tenant, id=f"b-{i}", index=i) for i in range(3)]
    headers = {"tenant_id": tenant, "idempotency_key": "nodes-1"}
    assert task.apply(args=[batch], headers=headers, throw=True).get() == {"inserted": 3}
    assert task.apply(args=[batch], headers=headers, throw=True).get() == {"skipped": "duplicate"}
    other = new_tenant(runtime)
    with pytest.raises(FatalTaskError):
        task.apply(args=[batch], headers={"tenant_id": other}, throw=True).get()
