"""Retries, dead letters and replay, on a real worker.

A poison task (always a retryable error) is retried exactly as its policy says, with growing
delays, then lands in the dead letters; replay runs it again. A fatal error is never retried.
Each run leaves a task record whose states tell the story.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest
from sqlalchemy import select

from relay.models import TaskRecord, TaskStatus
from relay.retry import FatalTaskError, RetryableTaskError, RetryPolicy
from relay.runtime import Runtime
from relay.tasks.base import RelayTask
from tests.conftest import run_worker
from tests.waiting import wait_until

POLICY = RetryPolicy(max_attempts=4, base_delay=0.2, max_delay=5.0, jitter=False)
CURED = "tests:poison:cured"


@pytest.fixture
def calls(runtime: Runtime) -> list[tuple[int, float]]:
    """Registers the test tasks on this runtime's Celery app; yields their start log."""
    log: list[tuple[int, float]] = []

    @runtime.celery.task(
        name="tests.poison", base=RelayTask, bind=True, retry_policy=POLICY, shared=False
    )
    def poison(self: RelayTask, label: str) -> str:
        log.append((self.request.retries + 1, time.monotonic()))
        if runtime.redis.get(CURED):
            return f"{label}: cured"
        raise RetryableTaskError("provider unavailable")

    @runtime.celery.task(
        name="tests.fatal", base=RelayTask, bind=True, retry_policy=POLICY, shared=False
    )
    def fatal(self: RelayTask, label: str) -> str:
        log.append((self.request.retries + 1, time.monotonic()))
        raise FatalTaskError(f"{label}: input can never succeed")

    return log


def _record(runtime: Runtime, task_id: str) -> TaskRecord | None:
    runtime.lifecycle.flush()
    with runtime.db.session() as session:
        return session.scalar(select(TaskRecord).where(TaskRecord.id == task_id))


def _send(runtime: Runtime, name: str, label: str) -> Any:
    return runtime.celery.send_task(
        name, args=[label], queue="monitor", headers={"tenant_id": None}
    )


def test_poison_task_is_retried_by_policy_then_dead_lettered(
    runtime: Runtime, calls: list[tuple[int, float]]
) -> None:
    dead = runtime.lifecycle.dead_letters
    with run_worker(runtime, queues=["monitor"]):
        result = _send(runtime, "tests.poison", "p1")
        wait_until(lambda: dead.count() == 1, timeout=30, what="the dead letter")

        assert [attempt for attempt, _ in calls] == [1, 2, 3, 4]
        gaps = [later - earlier for (_, earlier), (_, later) in itertools.pairwise(calls)]
        expected = [POLICY.backoff(n) for n in (1, 2, 3)]  # 0.2, 0.4, 0.8 s
        # Never earlier than the policy says (the backoff is applied, and it grows: 0.2, 0.4,
        # 0.8 s); later only by how long a loaded machine takes to deliver the delayed message.
        for gap, want in zip(gaps, expected, strict=True):
            assert want - 0.05 <= gap <= want + 5.0, (gaps, expected)
        assert expected[0] < expected[1] < expected[2]

        [letter] = dead.list_letters()
        assert letter.task_id == result.id
        assert letter.reason == "exhausted"
        assert letter.attempts == 4
        assert letter.args == ["p1"]
        assert "provider unavailable" in letter.error
        assert letter.traceback
        assert "RetryableTaskError" in letter.traceback
        record = wait_until(
            lambda: (r := _record(runtime, result.id)) and r.status == TaskStatus.DEAD and r,
            what="the DEAD record",
        )
        assert record.status == TaskStatus.DEAD
        assert record.attempts == 4

        # Replay: a fresh task (fresh attempt count) that now succeeds, linked to the letter.
        runtime.redis.set(CURED, "1")
        new_id = dead.replay(letter.id)
        assert new_id != result.id
        replayed = runtime.celery.AsyncResult(new_id)
        assert replayed.get(timeout=30) == "p1: cured"
        assert calls[-1][0] == 1, "a replay starts again at attempt 1"
        assert dead.get(letter.id).replayed_task_id == new_id
        done = wait_until(
            lambda: (r := _record(runtime, new_id)) and r.status == TaskStatus.SUCCESS and r,
            what="the replay's record",
        )
        assert done.headers["replay_of"] == letter.id


def test_fatal_error_is_dead_lettered_without_retry(
    runtime: Runtime, calls: list[tuple[int, float]]
) -> None:
    dead = runtime.lifecycle.dead_letters
    with run_worker(runtime, queues=["monitor"]):
        result = _send(runtime, "tests.fatal", "f1")
        wait_until(lambda: dead.count() == 1, timeout=20, what="the dead letter")
        with pytest.raises(FatalTaskError):
            result.get(timeout=10)
    assert [attempt for attempt, _ in calls] == [1]
    [letter] = dead.list_letters()
    assert letter.reason == "fatal"
    assert letter.attempts == 1
    record = wait_until(
        lambda: (r := _record(runtime, result.id)) and r.status == TaskStatus.DEAD and r,
        what="the DEAD record",
    )
    assert record.status == TaskStatus.DEAD


def test_successful_task_leaves_a_complete_record(runtime: Runtime, worker: Any) -> None:
    result = runtime.celery.send_task("relay.ping", args=["recorded"])
    assert result.get(timeout=20)["pong"] == "recorded"
    record = wait_until(
        lambda: (r := _record(runtime, result.id)) and r.status == TaskStatus.SUCCESS and r,
        what="the SUCCESS record",
    )
    assert record.name == "relay.ping"
    assert record.queue == "monitor"
    assert record.attempts == 1
    assert record.started_at is not None
    assert record.finished_at is not None
    assert record.finished_at >= record.started_at
    assert record.result["pong"] == "recorded"
    assert record.worker
