"""The task middleware chain on relay.testing's doubles: no Redis, no database, no broker."""

from __future__ import annotations

from typing import Any

import pytest

from relay.errors import TaskError
from relay.models import TaskStatus
from relay.retry import FatalTaskError, RetryableTaskError, RetryPolicy
from relay.testing import InMemoryBroker, memory_app
from relay.worker.middleware import OutgoingMessage, Proceed, TaskCall, TaskMiddleware
from relay.worker.task import ChainedTask


class Journal(TaskMiddleware):
    """Writes down every hook, in order."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    def before_publish(self, message: OutgoingMessage) -> None:
        message.headers[f"seen_by_{self.name}"] = True

    def on_start(self, call: TaskCall) -> None:
        self.log.append(f"{self.name}.start")

    def around(self, call: TaskCall, proceed: Proceed) -> Any:
        self.log.append(f"{self.name}.enter")
        try:
            return proceed()
        finally:
            self.log.append(f"{self.name}.exit")

    def on_success(self, call: TaskCall, result: Any) -> None:
        self.log.append(f"{self.name}.success")

    def on_retry(self, call: TaskCall, error: BaseException, decision: Any) -> None:
        self.log.append(f"{self.name}.retry")

    def on_dead(self, call: TaskCall, error: BaseException, decision: Any) -> None:
        self.log.append(f"{self.name}.dead")


@pytest.fixture
def broker() -> InMemoryBroker:
    return InMemoryBroker()


def test_a_task_runs_through_every_middleware_in_order(broker: InMemoryBroker) -> None:
    log: list[str] = []
    app = memory_app(broker, Journal("outer", log), Journal("inner", log))

    @app.task(base=ChainedTask, bind=True, name="tests.add")
    def add(self: ChainedTask, a: int, b: int) -> int:
        log.append("body")
        return a + b

    task_id = add.delay(2, 3).id
    assert broker.messages[0].headers["seen_by_outer"] is True, "publish hooks ran"
    assert broker.join() == {task_id: 5}
    assert log == [
        "outer.start", "inner.start", "outer.enter", "inner.enter", "body",
        "inner.exit", "outer.exit", "outer.success", "inner.success",
    ]  # fmt: skip
    record = app.stores.records.records[task_id]
    assert (record["status"], record["attempts"], record["args"]) == (TaskStatus.SUCCESS, 1, [2, 3])


def test_retries_follow_the_policy_then_dead_letter(broker: InMemoryBroker) -> None:
    log: list[str] = []
    app = memory_app(broker, Journal("j", log))
    attempts: list[int] = []

    @app.task(base=ChainedTask, bind=True, name="tests.flaky")
    def flaky(self: ChainedTask) -> None:
        attempts.append(self.request.retries)
        raise RetryableTaskError("try later")

    flaky.retry_policy = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.01)
    task_id = broker.send_task("tests.flaky", task_id="t-1")
    results = broker.join()

    assert attempts == [0, 1, 2]
    assert isinstance(results[task_id], RetryableTaskError)
    assert [entry for entry in log if entry.endswith(("retry", "dead"))] == [
        "j.retry", "j.retry", "j.dead",
    ]  # fmt: skip
    [letter] = app.stores.records.dead_letters
    assert (letter["task_id"], letter["attempts"], letter["name"]) == ("t-1", 3, "tests.flaky")
    assert app.stores.records.records["t-1"]["status"] == TaskStatus.DEAD


def test_a_fatal_error_is_dead_at_once(broker: InMemoryBroker) -> None:
    app = memory_app(broker)

    @app.task(base=ChainedTask, bind=True, name="tests.fatal")
    def fatal(self: ChainedTask) -> None:
        raise FatalTaskError("bad input")

    broker.send_task("tests.fatal", task_id="f-1")
    broker.join()
    assert [d["attempts"] for d in app.stores.records.dead_letters] == [1]


def test_an_effect_applies_once_per_idempotency_key(broker: InMemoryBroker) -> None:
    app = memory_app(broker)
    applied: list[str] = []

    @app.task(base=ChainedTask, bind=True, name="tests.effect")
    def effect(self: ChainedTask, label: str) -> bool:
        with self.effect() as unit:
            if unit is None:
                return False
            applied.append(label)
            return True

    headers = {"idempotency_key": "k-1"}
    first = broker.send_task("tests.effect", args=["a"], headers=headers)
    again = broker.send_task("tests.effect", args=["a"], headers=headers)
    other = broker.send_task("tests.effect", args=["b"], headers={"idempotency_key": "k-2"})
    assert broker.join() == {first: True, again: False, other: True}
    assert applied == ["a", "b"]


def test_a_direct_call_is_refused_with_a_clear_error(broker: InMemoryBroker) -> None:
    app = memory_app(broker)

    @app.task(base=ChainedTask, bind=True, name="tests.direct")
    def direct(self: ChainedTask) -> int:
        return 1

    with pytest.raises(TaskError, match="must run through the broker"):
        direct()


def test_tasks_that_publish_run_in_the_same_join(broker: InMemoryBroker) -> None:
    app = memory_app(broker)
    seen: list[int] = []

    @app.task(base=ChainedTask, bind=True, name="tests.countdown")
    def countdown(self: ChainedTask, n: int) -> int:
        seen.append(n)
        if n:
            app.send_task("tests.countdown", args=[n - 1])
        return n

    broker.send_task("tests.countdown", args=[3])
    assert len(broker.join()) == 4
    assert seen == [3, 2, 1, 0]
