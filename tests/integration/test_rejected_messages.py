"""Messages a worker cannot run (unknown task, not a task message, arguments that do not fit)
become dead letters with reason ``rejected``: no silent loss, no record left at RETRY."""

from __future__ import annotations

from typing import Any

from kombu import Exchange
from sqlalchemy import select

from relay.models import DeadLetter, TaskRecord, TaskStatus
from relay.runtime import Runtime
from tests.waiting import wait_until


def _letter(runtime: Runtime, **filters: Any) -> DeadLetter | None:
    with runtime.db.session() as session:
        return session.scalars(select(DeadLetter).filter_by(**filters)).first()


def _record(runtime: Runtime, task_id: str) -> TaskRecord | None:
    runtime.lifecycle.flush()
    with runtime.db.session() as session:
        return session.get(TaskRecord, task_id)


def test_an_unknown_task_is_a_dead_letter(runtime: Runtime, worker: Any) -> None:
    runtime.celery.send_task(
        "relay.no_such_task", args=[1], kwargs={"a": 2}, task_id="unknown-1", queue="monitor"
    )
    letter = wait_until(lambda: _letter(runtime, task_id="unknown-1"), what="its dead letter")
    assert letter.reason == "rejected"
    assert letter.task_name == "relay.no_such_task"
    assert letter.args == [1]
    assert letter.kwargs == {"a": 2}
    assert "unknown task" in letter.error
    # It can be replayed once the task exists (here: it simply is sent again).
    runtime.lifecycle.dead_letters.replay(letter.id)


def test_arguments_that_do_not_fit_are_dead_at_once(runtime: Runtime, worker: Any) -> None:
    # relay.ping takes one optional argument; a Celery client sent three.
    runtime.celery.send_task("relay.ping", args=[1, 2, 3], task_id="bad-args", queue="monitor")
    letter = wait_until(lambda: _letter(runtime, task_id="bad-args"), what="its dead letter")
    assert letter.reason == "rejected"
    assert letter.attempts == 1
    record = wait_until(lambda: _record(runtime, "bad-args"), what="its record")
    assert record.status == TaskStatus.DEAD


def test_a_message_that_is_no_task_is_a_dead_letter(runtime: Runtime, worker: Any) -> None:
    with runtime.celery.producer_or_acquire() as producer:
        producer.publish(
            {"hello": "world"},
            exchange=Exchange("relay", type="direct"),
            routing_key="monitor",
            serializer="json",
            headers={"origin": "a foreign producer"},
        )
    letter = wait_until(
        lambda: _letter(runtime, task_name="(not a task message)"), what="its dead letter"
    )
    assert letter.reason == "rejected"
    assert letter.queue == "monitor"
