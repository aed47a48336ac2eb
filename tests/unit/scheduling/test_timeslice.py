"""Time slices: a long run yields only past its slice and only while another tenant waits."""

from __future__ import annotations

from relay.config import Plan, TenancySettings
from relay.scheduling.dispatcher import FairDispatcher, FairTicket
from relay.scheduling.settings import SchedulingSettings
from relay.scheduling.tenant_queue import NewItem
from relay.scheduling.tenant_queue_memory import InMemoryTenantQueue
from relay.scheduling.timeslice import (
    NeverYield,
    SliceController,
    TenantSliceController,
    TimeSlicePolicy,
    requeue_continuation,
)
from tests.unit.scheduling.test_dispatcher import Broker
from tests.unit.scheduling.test_tenant_queue_memory import FakeClock

SETTINGS = SchedulingSettings(
    window=1, time_slice={Plan.SANDBOX: 10.0, Plan.TEAM: 60.0}, slice_probe_interval=1.0
)
QUEUE = "workflow_sandbox"


def _policy(clock: FakeClock) -> tuple[TimeSlicePolicy, InMemoryTenantQueue]:
    queue = InMemoryTenantQueue(SETTINGS, clock)
    return TimeSlicePolicy(queue, SETTINGS, clock=clock), queue


def test_a_run_past_its_slice_yields_only_when_others_wait() -> None:
    clock = FakeClock()
    policy, queue = _policy(clock)
    queue.enqueue_or_acquire(QUEUE, NewItem("run-a", "a", "workflow", "{}", 1, 1))
    controller: SliceController = TenantSliceController(policy, "a", Plan.SANDBOX)
    assert not controller.should_yield(11.0), "nobody else waits: keep running"
    queue.enqueue_or_acquire(QUEUE, NewItem("run-b", "b", "workflow", "{}", 1, 1))
    assert not controller.should_yield(11.0), "the answer is cached for the probe interval"
    clock.advance(1.0)
    assert controller.should_yield(11.0)
    assert not controller.should_yield(9.0), "within its slice a run never yields"
    assert not policy.should_yield("a", Plan.TEAM, 30.0), "team plans have longer slices"
    assert policy.should_yield("a", Plan.TEAM, 61.0, queue=QUEUE)
    assert not NeverYield().should_yield(1e9)


def test_a_continuation_keeps_tenant_queue_and_task_type() -> None:
    clock = FakeClock()
    queue = InMemoryTenantQueue(SETTINGS, clock)
    broker = Broker()
    dispatcher = FairDispatcher(queue, broker, SETTINGS, TenancySettings(), clock=clock)
    ticket = FairTicket(QUEUE, "run-1", "a", "workflow.run", "7")
    first = requeue_continuation(
        dispatcher, ticket, Plan.SANDBOX, "relay.workflow.resume", ["run-1"], {"checkpoint": 3},
        continuation_id="run-1:3",
    )  # fmt: skip
    again = requeue_continuation(
        dispatcher, ticket, Plan.SANDBOX, "relay.workflow.resume", continuation_id="run-1:3"
    )
    assert first == again == "run-1:3"
    [message] = broker.sent
    assert (message["queue"], message["kwargs"]) == (QUEUE, {"checkpoint": 3})
    assert message["headers"]["relay_fair"]["k"] == "workflow.run"
