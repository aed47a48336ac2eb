"""Attempts count deliveries that died; outages retry on the long infrastructure policy."""

from __future__ import annotations

from typing import Any

import pytest
import redis
import sqlalchemy.exc
from kombu.exceptions import OperationalError

from relay.errors import BrokerUnavailable, DatabaseUnavailable, RedisUnavailable
from relay.resilience.outages import as_outage
from relay.retry import INFRASTRUCTURE_POLICY, RetryDecision
from relay.testing import InMemoryBroker, memory_app
from relay.worker.deliveries import DeliveryGuard, MemoryDeliveryCounts
from relay.worker.middleware import TaskCall, TaskMiddleware
from relay.worker.task import ChainedTask


class WorkerDeath(BaseException):
    """Stands for a SIGKILL: no hook of the chain sees the end of the delivery."""


class Decisions(TaskMiddleware):
    def __init__(self) -> None:
        self.retries: list[RetryDecision] = []

    def on_retry(self, call: TaskCall, error: BaseException, decision: RetryDecision) -> None:
        self.retries.append(decision)


def test_a_task_that_kills_its_worker_is_dead_lettered_after_its_attempts() -> None:
    broker = InMemoryBroker()
    app = memory_app(broker, DeliveryGuard(MemoryDeliveryCounts()))
    runs: list[int] = []

    @app.task(base=ChainedTask, bind=True, name="tests.kills_its_worker")
    def poison(self: ChainedTask) -> None:
        runs.append(1)
        raise WorkerDeath

    for _ in range(3):
        with pytest.raises(WorkerDeath):
            poison.apply(task_id="poison-1", throw=True)
    # The fourth delivery finds three that never ended: it may run three times, it is buried.
    result = poison.apply(task_id="poison-1")
    assert len(runs) == 3
    assert result.failed()
    (letter,) = app.stores.records.dead_letters
    assert letter["reason"] == "worker_lost"
    assert letter["attempts"] == 4
    # And it stays buried: a replay of the same message does not run it again either.
    poison.apply(task_id="poison-1")
    assert len(runs) == 3


def test_deliveries_that_end_do_not_count() -> None:
    broker = InMemoryBroker()
    counts = MemoryDeliveryCounts()
    app = memory_app(broker, DeliveryGuard(counts))

    @app.task(base=ChainedTask, bind=True, name="tests.fine")
    def fine(self: ChainedTask) -> int:
        return 1

    for _ in range(10):
        assert fine.apply(task_id="same-id").get() == 1
    assert counts.begin("same-id") == 1


def test_an_outage_retries_on_the_infrastructure_policy() -> None:
    broker = InMemoryBroker()
    decisions = Decisions()
    app = memory_app(broker, decisions)
    calls: list[int] = []

    @app.task(base=ChainedTask, bind=True, name="tests.redis_down")
    def flaky(self: ChainedTask) -> str:
        calls.append(1)
        if len(calls) <= 6:  # twice the default policy's attempts
            raise redis.ConnectionError("Connection refused")
        return "done"

    assert flaky.apply(throw=True).get() == "done"
    assert len(decisions.retries) == 6
    # Backoff grows towards minutes instead of a few seconds.
    # (ceiling after the sixth run: 2 s * 2^5 = 64 s; jitter keeps at least half of it)
    assert decisions.retries[-1].delay >= 32
    assert INFRASTRUCTURE_POLICY.max_delay >= 120


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (redis.ConnectionError("refused"), RedisUnavailable),
        (redis.TimeoutError("timeout"), RedisUnavailable),
        (OperationalError("broker"), BrokerUnavailable),
        (sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("gone")), DatabaseUnavailable),
    ],
)
def test_client_errors_map_to_infrastructure_errors(error: Exception, kind: Any) -> None:
    assert isinstance(as_outage(error), kind)
    wrapped = ValueError("wrapped")
    wrapped.__cause__ = error
    assert isinstance(as_outage(wrapped), kind)
    assert as_outage(ValueError("not an outage")) is None
