"""The Redis Stream channel and Redis run control against a real Redis server."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from relay.runtime import Runtime
from relay.streaming import (
    START,
    AppQueueManager,
    InvokeFrom,
    QueueConfig,
    RedisRunControl,
    RedisStreamChannel,
    StopBy,
    StopEvent,
)
from relay.streaming.channels import parse_id, stream_key
from relay.streaming.queue_events import TextChunkEvent
from tests.unit.streaming.test_run_control import (
    check_attempts_and_stops,
    check_checkpoints,
    check_liveness,
)


@pytest.fixture
def channel(runtime: Runtime) -> RedisStreamChannel:
    return RedisStreamChannel(runtime.redis, retention=30, active_ttl=300)


def test_entries_get_increasing_stream_ids_and_read_resumes_after_any_of_them(
    channel: RedisStreamChannel,
) -> None:
    ids = [channel.append("r1", "text_chunk", f'{{"n":{n}}}') for n in range(10)]
    assert all(ids)
    assert [parse_id(i) for i in ids if i] == sorted(parse_id(i) for i in ids if i)
    assert [e.id for e in channel.read("r1", START)] == ids
    assert [e.data for e in channel.read("r1", str(ids[6]))] == ['{"n":7}', '{"n":8}', '{"n":9}']
    assert channel.read("r1", str(ids[-1]), block=0.05) == []


def test_the_final_event_closes_the_stream_and_starts_its_retention(
    runtime: Runtime, channel: RedisStreamChannel
) -> None:
    channel.append("r2", "text_chunk", "{}")
    assert 30 < channel.ttl("r2") <= 300  # active: lives on while the run does
    final = channel.append("r2", "workflow_succeeded", "{}", final=True)
    assert final is not None
    assert 0 < channel.ttl("r2") <= 30  # retention counts from the last event
    assert channel.append("r2", "text_chunk", "{}") is None
    assert channel.append("r2", "error", "{}", final=True) is None
    last = channel.last("r2")
    assert last is not None
    assert (last.id, last.final) == (final, True)
    assert runtime.redis.xlen(stream_key("r2")) == 2


def test_racing_final_writers_leave_exactly_one_terminal_event(
    runtime: Runtime, channel: RedisStreamChannel
) -> None:
    channel.append("r3", "workflow_started", "{}")
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(
            pool.map(lambda n: channel.append("r3", "error", f'{{"n":{n}}}', final=True), range(64))
        )
    assert sum(r is not None for r in results) == 1
    assert [e.final for e in channel.read("r3", START)] == [False, True]


def test_run_control_attempts_and_stops_on_redis(runtime: Runtime) -> None:
    check_attempts_and_stops(RedisRunControl(runtime.redis))


def test_run_control_liveness_on_redis(runtime: Runtime) -> None:
    check_liveness(RedisRunControl(runtime.redis))


def test_run_control_checkpoints_on_redis(runtime: Runtime) -> None:
    check_checkpoints(RedisRunControl(runtime.redis))


def test_listen_pings_an_idle_run_and_ends_at_the_maximum_time(
    runtime: Runtime, channel: RedisStreamChannel
) -> None:
    config = QueueConfig(ping_interval=0.1, max_execution_time=0.6, read_block=0.05)
    control = RedisRunControl(runtime.redis)
    worker = AppQueueManager(
        "idle", "u", InvokeFrom.SERVICE_API, channel=channel, control=control, config=config
    )
    worker.publish(TextChunkEvent(text="only one"))
    items = list(worker.listen())
    assert items[0].event == "text_chunk"
    assert items[0].id is not None
    pings = [i for i in items if i.event == "ping"]
    assert len(pings) >= 3
    assert all(p.id is None for p in pings)
    assert items[-1].final
    assert items[-1].model() == StopEvent(
        stopped_by=StopBy.TIMEOUT, reason="the listener reached its maximum time (0.6s)"
    )
