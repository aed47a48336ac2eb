"""``FairDispatcher`` on the in-memory queue with a recording broker (no Celery, no Redis)."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from celery.exceptions import Ignore, Retry

from relay.config import Plan, TenancySettings
from relay.scheduling.dispatcher import HEADER, FairDispatcher, FairTicket, ticket_of
from relay.scheduling.gate import _seconds, run_fairly
from relay.scheduling.settings import SchedulingSettings
from relay.scheduling.tenant_queue import Outcome
from relay.scheduling.tenant_queue_memory import InMemoryTenantQueue
from tests.unit.scheduling.test_tenant_queue_memory import FakeClock

SETTINGS = SchedulingSettings(window=2, lease_ttl=3, dispatch_ttl=10, tick_interval=1000)


@dataclass
class Broker:
    """Stands in for ``celery.send_task``: records messages, can refuse them."""

    sent: list[dict[str, Any]] = field(default_factory=list)
    down: bool = False

    def send_task(self, name: str, **options: Any) -> None:
        if self.down:
            raise ConnectionError("broker down")
        self.sent.append({"name": name, **options})

    def pop(self) -> dict[str, Any]:
        return self.sent.pop(0)


def request_of(message: dict[str, Any]) -> SimpleNamespace:
    """What a worker's ``task.request`` holds for ``message``."""
    return SimpleNamespace(
        id=message["task_id"],
        task=message["name"],
        args=message["args"],
        kwargs=message["kwargs"],
        headers=message["headers"],
        retries=message["retries"],
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def broker() -> Broker:
    return Broker()


@pytest.fixture
def dispatcher(clock: FakeClock, broker: Broker) -> FairDispatcher:
    queue = InMemoryTenantQueue(SETTINGS, clock)
    d = FairDispatcher(queue, broker, SETTINGS, TenancySettings(), clock=clock)
    yield d
    d.close()


def test_submit_releases_within_the_window_with_the_ticket_header(
    dispatcher: FairDispatcher, broker: Broker
) -> None:
    first = dispatcher.submit("t1", Plan.TEAM, "relay.ping", ["x"], {"k": 1}, headers={"h": "v"})
    dispatcher.submit("t1", "team", "relay.ping")
    third = dispatcher.submit("t1", Plan.TEAM, "relay.ping")
    assert [m["task_id"] for m in broker.sent] == [first, broker.sent[1]["task_id"]]
    message = broker.sent[0]
    assert message["queue"] == "monitor", "the catalogue's route"
    assert (message["args"], message["kwargs"], message["retries"]) == (["x"], {"k": 1}, 0)
    assert message["headers"]["h"] == "v"
    assert message["headers"]["tenant_id"] == "t1"
    ticket = ticket_of(request_of(message))
    assert ticket == FairTicket(
        "monitor", first, "t1", "relay.ping", ticket.token if ticket else ""
    )
    assert third not in [m["task_id"] for m in broker.sent]


def test_plan_sets_the_concurrency_limit(dispatcher: FairDispatcher, broker: Broker) -> None:
    for _ in range(3):
        dispatcher.submit("poor", Plan.SANDBOX, "tests.work", queue="q")
    assert len(broker.sent) == 1, "sandbox: one at a time per task type"
    state = dispatcher.queue.snapshot("q")[0]
    assert (state.weight, state.waiting, state.running) == (1, 2, 1)


def test_finishing_hands_the_window_to_the_fairest_tenant(
    dispatcher: FairDispatcher, broker: Broker
) -> None:
    # Declared costs: the charge does not depend on how fast the lambdas below run.
    for _ in range(10):
        dispatcher.submit("noisy", Plan.TEAM, "tests.work", queue="q", cost=1.0)
    dispatcher.submit("quiet", Plan.SANDBOX, "tests.work", queue="q", cost=1.0)
    assert len(broker.sent) == 2
    result = run_fairly(dispatcher, request_of(broker.pop()), lambda: "done")
    assert result == "done"
    assert broker.sent[-1]["headers"]["tenant_id"] == "quiet"


def test_a_stale_copy_is_ignored_and_an_unscheduled_message_just_runs(
    dispatcher: FairDispatcher, broker: Broker
) -> None:
    dispatcher.submit("t1", Plan.TEAM, "tests.work", queue="q")
    message = broker.pop()
    run_fairly(dispatcher, request_of(message), lambda: None)
    with pytest.raises(Ignore):
        run_fairly(dispatcher, request_of(message), lambda: pytest.fail("ran twice"))
    plain = SimpleNamespace(id="x", headers=None, retries=0)
    assert run_fairly(dispatcher, plain, lambda: 42) == 42


def test_a_failure_frees_the_slot(dispatcher: FairDispatcher, broker: Broker) -> None:
    for _ in range(2):
        dispatcher.submit("poor", Plan.SANDBOX, "tests.work", queue="q")
    with pytest.raises(ZeroDivisionError):
        run_fairly(dispatcher, request_of(broker.pop()), lambda: 1 / 0)
    assert len(broker.sent) == 1, "the next item took the slot"
    assert dispatcher.queue.stats("q")["failure"] == 1


def test_a_retry_waits_its_turn_again_and_keeps_its_retry_count(
    dispatcher: FairDispatcher, broker: Broker
) -> None:
    for _ in range(2):
        dispatcher.submit("poor", Plan.SANDBOX, "tests.work", ["a"], queue="q")
    first = broker.pop()

    def fail_with_retry() -> None:
        raise Retry(when=5)

    with pytest.raises(Retry):
        run_fairly(dispatcher, request_of(first), fail_with_retry)
    assert len(broker.sent) == 1, "the slot went to the next item during the backoff"
    # Celery re-sends the retried message itself: same id, same ticket, retries + 1.
    retried = request_of({**first, "retries": 1})
    with pytest.raises(Ignore):
        run_fairly(dispatcher, retried, lambda: pytest.fail("over the limit"))
    run_fairly(dispatcher, request_of(broker.pop()), lambda: None)
    again = broker.pop()
    assert (again["task_id"], again["retries"], again["args"]) == (first["task_id"], 1, ["a"])
    assert HEADER in again["headers"]
    run_fairly(dispatcher, request_of(again), lambda: None)
    assert dispatcher.queue.snapshot("q") == []


def test_an_unsendable_release_waits_for_the_next_tick(
    dispatcher: FairDispatcher, broker: Broker
) -> None:
    broker.down = True
    task_id = dispatcher.submit("t1", Plan.TEAM, "tests.work", queue="q")
    assert dispatcher.queue.snapshot("q")[0].waiting == 1
    broker.down = False
    report = dispatcher.tick()
    assert (report.reclaimed, report.released) == (0, 1)
    assert broker.pop()["task_id"] == task_id


def test_tick_reclaims_the_slots_of_a_dead_worker(
    dispatcher: FairDispatcher, broker: Broker, clock: FakeClock
) -> None:
    for _ in range(2):
        dispatcher.submit("poor", Plan.SANDBOX, "tests.work", queue="q")
    message = broker.pop()
    slot = dispatcher.begin(request_of(message))
    assert slot is not None
    assert slot.run
    dispatcher.renewer.stop()
    dispatcher.renewer.drop(message["task_id"])  # the worker dies: no more heartbeats
    clock.advance(SETTINGS.lease_ttl + 1)
    report = dispatcher.tick()
    assert report.reclaimed == 1
    assert broker.pop()["task_id"] == message["task_id"], "the lost run is released again"
    with pytest.raises(Ignore):
        run_fairly(dispatcher, request_of(message), lambda: None)


def test_heartbeat_keeps_a_long_run_alive(
    dispatcher: FairDispatcher, broker: Broker, clock: FakeClock
) -> None:
    dispatcher.submit("t1", Plan.TEAM, "tests.work", queue="q")
    message = broker.pop()
    slot = dispatcher.begin(request_of(message))
    assert slot is not None
    for _ in range(5):
        clock.advance(SETTINGS.lease_ttl / 2)
        assert dispatcher.renewer.renew_now() == []
    assert dispatcher.tick().reclaimed == 0
    slot.finish(10.0)
    slot.finish(10.0)  # once only
    assert dispatcher.renewer.held() == []
    assert dispatcher.queue.snapshot("q") == []


def test_task_finished_accepts_the_message_headers(
    dispatcher: FairDispatcher, broker: Broker
) -> None:
    dispatcher.submit("t1", Plan.TEAM, "tests.work", queue="q", cost=3.0)
    message = broker.pop()
    assert dispatcher.task_finished(message["headers"], 0.01, outcome=Outcome.SUCCESS)
    assert not dispatcher.task_finished(message["headers"], 0.01)
    assert not dispatcher.task_finished({"unrelated": 1})


def test_submitting_the_same_id_twice_sends_once(
    dispatcher: FairDispatcher, broker: Broker
) -> None:
    for _ in range(2):
        dispatcher.submit("t1", Plan.TEAM, "tests.work", queue="q", task_id="fixed-id")
    assert [m["task_id"] for m in broker.sent] == ["fixed-id"]


def test_retry_when_is_read_as_seconds() -> None:
    from datetime import UTC, datetime, timedelta

    assert _seconds(3) == 3.0
    assert _seconds(None) == 0.0
    later = datetime.now(UTC) + timedelta(seconds=30)
    assert 28 < _seconds(later) <= 30
    assert _seconds(later.replace(tzinfo=None)) > 0


def test_a_scheduler_outage_at_the_end_does_not_change_the_task_outcome(
    dispatcher: FairDispatcher, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    dispatcher.submit("t1", Plan.TEAM, "tests.work", queue="q")
    request = request_of(broker.pop())

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("redis down")

    dispatcher.queue.release_and_pull_next = broken  # type: ignore[method-assign]
    assert run_fairly(dispatcher, request, lambda: "result") == "result"
    assert "could not report the end of a task" in caplog.text


def test_a_requeueing_reject_counts_as_a_retry(dispatcher: FairDispatcher, broker: Broker) -> None:
    from celery.exceptions import Reject

    dispatcher.submit("t1", Plan.TEAM, "tests.work", queue="q")
    message = broker.pop()

    def reject() -> None:
        raise Reject("later", requeue=True)

    with pytest.raises(Reject):
        run_fairly(dispatcher, request_of(message), reject)
    assert dispatcher.queue.stats("q")["retry"] == 1
    # The requeued message comes back (same ticket) and runs through the fair order again.
    assert run_fairly(dispatcher, request_of({**message, "retries": 1}), lambda: 7) == 7
    assert dispatcher.queue.snapshot("q") == []


def test_an_unreachable_redis_is_a_503_not_a_500() -> None:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry as RedisRetry

    from relay.errors import InfrastructureError
    from relay.scheduling.tenant_queue import NewItem, RedisTenantQueue

    client = redis.Redis(host="127.0.0.1", port=1, retry=RedisRetry(NoBackoff(), 0))
    queue = RedisTenantQueue(client, SETTINGS)
    with pytest.raises(InfrastructureError) as info:
        queue.enqueue_or_acquire("q", NewItem("x", "t", "k", "{}", 1, 1))
    assert info.value.status == 503
