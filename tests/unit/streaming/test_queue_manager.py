"""AppQueueManager on the in-memory channel and control: Dify's contract, made exact."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis

from relay.models import Tenant
from relay.streaming import (
    AppQueueManager,
    InMemoryRunChannel,
    InMemoryRunControl,
    InvokeFrom,
    QueueConfig,
    RunFinishedError,
    RunStoppedError,
    StopBy,
    StopEvent,
    StreamItem,
    UnsafeEventError,
    owner_of,
)
from relay.streaming.queue_events import (
    QueueEvent,
    TextChunkEvent,
    WorkflowStartedEvent,
    WorkflowSucceededEvent,
)
from relay.streaming.run_control import State

FAST = QueueConfig(ping_interval=0.05, max_execution_time=5.0, stop_grace=0.2, read_block=0.02)


@pytest.fixture
def channel() -> InMemoryRunChannel:
    return InMemoryRunChannel()


@pytest.fixture
def control() -> InMemoryRunControl:
    return InMemoryRunControl()


def manager(
    channel: InMemoryRunChannel,
    control: InMemoryRunControl,
    user: str = "u1",
    config: QueueConfig = FAST,
    **kwargs: object,
) -> AppQueueManager:
    return AppQueueManager(
        "run-1", user, InvokeFrom.SERVICE_API, channel=channel, control=control, config=config,
        **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip


def chunk(text: str) -> TextChunkEvent:
    return TextChunkEvent(text=text)


def events_of(items: Iterator[StreamItem]) -> list[tuple[str, str | None]]:
    return [(item.event, item.id) for item in items]


def test_ownership_is_recorded_once_by_the_first_manager(
    channel: InMemoryRunChannel, control: InMemoryRunControl
) -> None:
    first = manager(channel, control, "alice")
    second = manager(channel, control, "mallory")
    assert control.owner("run-1") == "end-user-alice"
    assert first.is_owner
    assert not second.is_owner
    assert owner_of(InvokeFrom.DEBUGGER, "acct") == "account-acct"
    assert owner_of(InvokeFrom.WEB_APP, "eu") == "end-user-eu"


def test_listen_yields_published_events_in_order_and_ends_after_the_final_one(
    channel: InMemoryRunChannel, control: InMemoryRunControl
) -> None:
    worker = manager(channel, control)
    ids = [worker.publish(WorkflowStartedEvent()), worker.publish(chunk("a"))]
    ids.append(worker.publish(WorkflowSucceededEvent(outputs={"x": 1}), final=True))
    listened = list(manager(channel, control, record_owner=False).listen())
    assert [(i.id, i.event, i.final) for i in listened] == [
        (ids[0], "workflow_started", False),
        (ids[1], "text_chunk", False),
        (ids[2], "workflow_succeeded", True),
    ]
    assert listened[2].model() == WorkflowSucceededEvent(outputs={"x": 1})


def test_listen_after_an_id_resumes_exactly_there(
    channel: InMemoryRunChannel, control: InMemoryRunControl
) -> None:
    worker = manager(channel, control)
    ids = [worker.publish(chunk(str(n))) for n in range(5)]
    worker.publish(chunk("end"), final=True)
    resumed = [i.model() for i in manager(channel, control).listen(after=ids[2])]
    assert [getattr(e, "text", None) for e in resumed] == ["3", "4", "end"]


def test_listen_waits_for_events_published_later(
    channel: InMemoryRunChannel, control: InMemoryRunControl
) -> None:
    listener = manager(channel, control).listen()
    worker = manager(channel, control)
    publisher = threading.Timer(0.1, lambda: worker.publish(chunk("late"), final=True))
    publisher.start()
    items = [i for i in listener if i.event != "ping"]
    publisher.join()
    assert [i.model() for i in items] == [chunk("late")]


def test_an_idle_run_is_pinged_and_the_listener_ends_at_its_maximum_time(
    channel: InMemoryRunChannel, control: InMemoryRunControl
) -> None:
    config = QueueConfig(ping_interval=0.05, max_execution_time=0.4, read_block=0.02)
    items = list(manager(channel, control, config=config).listen())
    pings = [i for i in items if i.event == QueueEvent.PING]
    assert len(pings) >= 4
    assert all(p.id is None for p in pings)
    assert items[-1].final
    assert items[-1].id is None
    stop = items[-1].model()
    assert isinstance(stop, StopEvent)
    assert stop.stopped_by is StopBy.TIMEOUT


def test_a_stop_with_no_worker_to_confirm_ends_the_listener_after_the_grace_period(
    channel: InMemoryRunChannel, control: InMemoryRunControl
) -> None:
    manager(channel, control)  # the run is queued; no worker has claimed it
    assert AppQueueManager.set_stop_flag(control, "run-1", InvokeFrom.SERVICE_API, "u1")
    items = list(manager(channel, control).listen())
    assert items[-1].event == "stop"
    assert items[-1].final


def test_only_the_owner_sets_the_stop_flag(
    channel: InMemoryRunChannel, control: InMemoryRunControl
) -> None:
    manager(channel, control, "alice")
    assert not AppQueueManager.set_stop_flag(control, "run-1", InvokeFrom.SERVICE_API, "mallory")
    assert not AppQueueManager.set_stop_flag(control, "run-1", InvokeFrom.DEBUGGER, "alice")
    assert not control.stopping("run-1")
    assert AppQueueManager.set_stop_flag(control, "run-1", InvokeFrom.SERVICE_API, "alice")
    assert control.stopping("run-1")


def test_publishing_after_a_stop_raises_except_for_the_final_event(
    channel: InMemoryRunChannel, control: InMemoryRunControl
) -> None:
    worker = manager(channel, control)
    assert worker.claim().claimed
    worker.publish(chunk("before"))
    AppQueueManager.set_stop_flag(control, "run-1", InvokeFrom.SERVICE_API, "u1")
    assert worker.poll_stop()
    with pytest.raises(RunStoppedError):
        worker.publish(chunk("after"))
    worker.publish(StopEvent(reason="stopped by user"), final=True)
    with pytest.raises(RunFinishedError):
        worker.publish(StopEvent(), final=True)
    assert [i.event for i in manager(channel, control).listen()] == ["text_chunk", "stop"]


def test_a_second_final_event_is_refused_whoever_writes_it(
    channel: InMemoryRunChannel, control: InMemoryRunControl
) -> None:
    worker, reaper = manager(channel, control), manager(channel, control)
    reaper.publish(StopEvent(reason="worker lost"), final=True)
    with pytest.raises(RunFinishedError):
        worker.publish(chunk("late"))
    with pytest.raises(RunFinishedError):
        worker.publish(WorkflowSucceededEvent(), final=True)


def test_stop_listen_ends_the_listener_and_further_publishing(
    channel: InMemoryRunChannel, control: InMemoryRunControl
) -> None:
    mgr = manager(channel, control)
    mgr.publish(chunk("a"))
    listener = mgr.listen()
    assert next(listener).event == "text_chunk"
    mgr.stop_listen()
    assert list(listener) == []
    with pytest.raises(RunStoppedError):
        mgr.publish(chunk("b"))


def test_events_holding_sqlalchemy_objects_are_refused_with_a_clear_error(
    channel: InMemoryRunChannel, control: InMemoryRunControl
) -> None:
    worker = manager(channel, control)
    row = Tenant(name="acme")
    bad = WorkflowSucceededEvent(outputs={"tenant": {"row": [row]}})
    with pytest.raises(UnsafeEventError, match=r"outputs\.tenant\.row\[0\].*SQLAlchemy.*Tenant"):
        worker.publish(bad)
    assert channel.last("run-1") is None  # nothing was written


def test_a_manager_needs_a_task_and_a_user(
    channel: InMemoryRunChannel, control: InMemoryRunControl
) -> None:
    with pytest.raises(ValueError, match="task id and a user id"):
        AppQueueManager("", "u", InvokeFrom.SERVICE_API, channel=channel, control=control)


def test_a_listener_ends_at_an_event_boundary_once_its_process_is_stopping(
    channel: InMemoryRunChannel, control: InMemoryRunControl
) -> None:
    worker = manager(channel, control)
    first = worker.publish(chunk("a"))
    stopping = threading.Event()
    listener = manager(channel, control, record_owner=False).listen(until=stopping.is_set)
    assert next(listener).id == first
    stopping.set()
    worker.publish(chunk("b"))
    started = time.monotonic()
    assert list(listener) == []  # no final event of its own: the client resumes elsewhere
    assert time.monotonic() - started < 1.0
    # Another process's listener, resuming after the last id it saw, gets the rest once.
    worker.publish(chunk("end"), final=True)
    resumed = [i.model() for i in manager(channel, control).listen(after=first)]
    assert [getattr(e, "text", None) for e in resumed] == ["b", "end"]


class UnreachableControl(InMemoryRunControl):
    """Run control whose Redis went away after the run was claimed."""

    down = False

    def stop_requested(self, run_id: str, attempt: int) -> bool:
        if self.down:
            raise redis.ConnectionError("Connection refused")
        return super().stop_requested(run_id, attempt)

    def release(self, run_id: str, state: State, ttl: int) -> None:
        if self.down:
            raise redis.ConnectionError("Connection refused")
        super().release(run_id, state, ttl)


def test_a_run_goes_on_and_ends_while_its_control_is_unreachable(
    channel: InMemoryRunChannel,
) -> None:
    control = UnreachableControl()
    manager = AppQueueManager(
        "run-x", "u1", InvokeFrom.SERVICE_API, channel=channel, control=control
    )
    assert manager.claim().claimed
    control.down = True
    assert manager.poll_stop() is False
    manager.publish(WorkflowSucceededEvent(), final=True)
    manager.release("finished")  # logged, not raised: the keys expire on their own
    control.down = False
    assert control.stop_requested("run-x", manager.attempt) is False
