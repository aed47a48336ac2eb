"""Redis killed while a run publishes: its events go to the local spool and are replayed into the
run's stream with their ids and order, and an SSE client resuming with Last-Event-ID after the
recovery receives every event once. Event counts survive the outage the same way."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from relay.composition import create_runtime
from relay.config import Settings
from relay.events.counters import RedisEventCounters
from relay.models import CreatorRole, WorkflowRun
from relay.monitoring.levels import Level
from relay.monitoring.resilience_health import resilience_components
from relay.resilience.breaker import Breakers
from relay.resilience.spool import Spool, SpoolEntry, breaker_probe
from relay.services.run_streams import end_user_id
from relay.streaming import START, QueueConfig, RedisRunControl, RedisStreamChannel, RunStreams, sse
from relay.streaming.channels import parse_id, stream_key
from relay.streaming.queue_events import TextChunkEvent, WorkflowSucceededEvent
from relay.streaming.spooled import KIND, SpoolingRunChannel, stream_replayer
from tests.integration.test_api_support import Api, admin_api
from tests.outages import OwnRedis
from tests.waiting import wait_until


class Parts:
    def __init__(self, server: OwnRedis, directory: Path) -> None:
        self.server = server
        self.client = redis.Redis.from_url(
            server.url, socket_timeout=1, socket_connect_timeout=1, decode_responses=True
        )
        self.breakers = Breakers(fail_max=3, reset_timeout=0.3)
        self.spool = Spool(
            directory,
            ready=breaker_probe(self.breakers, "redis", self.client.ping),
            interval=0.1,
        )
        self.inner = RedisStreamChannel(self.client, retention=600, active_ttl=3600)
        self.spool.register(KIND, stream_replayer(self.client, retention=600, active_ttl=3600))
        self.channel = SpoolingRunChannel(self.inner, self.spool, self.breakers)
        self.streams = RunStreams(
            channel=self.channel,
            control=RedisRunControl(self.client),
            config=QueueConfig(ping_interval=30, read_block=0.2),
        )


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[Parts]:
    server = OwnRedis(tmp_path / "redis", aof=True).start()
    try:
        yield Parts(server, tmp_path / "spool")
    finally:
        server.stop()


def read_events(streams: RunStreams, run_id: str, after: str) -> list[sse.SSEMessage]:
    parser = sse.SSEParser()
    messages: list[sse.SSEMessage] = []
    for item in streams.manager(run_id, "user-1", record_owner=False).listen(after=after):
        messages.extend(parser.feed(sse.encode(item.data, event=item.event, id=item.id).decode()))
    return messages


def test_run_events_published_during_an_outage_reach_the_stream_with_their_ids(
    parts: Parts,
) -> None:
    run_id = "run-outage"
    publisher = parts.streams.manager(run_id, "user-1")

    before = [publisher.publish(TextChunkEvent(text=f"before {i}")) for i in range(3)]
    # A client reads the first part, then its connection drops.
    first = [m.id for m in read_events_until(parts.streams, run_id, START, len(before))]
    assert first == before

    parts.server.kill()
    during = [publisher.publish(TextChunkEvent(text=f"during {i}")) for i in range(5)]
    assert parts.spool.stats().entries == 5
    # The replay helper's probes fail and open the circuit; from then on it does not probe.
    wait_until(lambda: parts.breakers.state("redis") == "open", timeout=10, what="circuit open")
    levels = {c.name: c.level for c in resilience_components(parts.spool, parts.breakers)}
    assert levels == {"spool": Level.WARNING, "circuit:redis": Level.CRITICAL}

    parts.server.start()
    # Published after Redis is back but before replay: spooled behind the outage's events.
    after = [publisher.publish(TextChunkEvent(text=f"after {i}")) for i in range(2)]
    after.append(publisher.publish(WorkflowSucceededEvent(), final=True))
    wait_until(lambda: parts.spool.stats().entries == 0, timeout=20, what="spool replayed")
    assert list(parts.spool.directory.glob("*.spool")) == []

    ids = before + during + after
    assert ids == sorted(ids, key=parse_id), "ids grow with the order of publishing"
    stored = parts.inner.read(run_id, START, count=100)
    assert [e.id for e in stored] == ids
    assert [e.final for e in stored] == [False] * (len(ids) - 1) + [True]

    # The client reconnects with the last id it saw and receives the rest, each event once.
    resumed = read_events(parts.streams, run_id, first[-1])
    assert [m.id for m in resumed] == during + after
    texts = [m.json().get("text") for m in resumed[:-1]]
    assert texts == [f"during {i}" for i in range(5)] + [f"after {i}" for i in range(2)]
    assert resumed[-1].event == "workflow_succeeded"


def read_events_until(
    streams: RunStreams, run_id: str, after: str, count: int
) -> list[sse.SSEMessage]:
    parser = sse.SSEParser()
    messages: list[sse.SSEMessage] = []
    for item in streams.manager(run_id, "user-1", record_owner=False).listen(after=after):
        messages.extend(parser.feed(sse.encode(item.data, event=item.event, id=item.id).decode()))
        if len(messages) >= count:
            break
    return messages


def test_replaying_a_run_event_twice_writes_it_once(parts: Parts) -> None:
    replay = stream_replayer(parts.client, retention=600, active_ttl=3600)
    live = parts.inner.append("run-twice", "text_chunk", '{"text":"live"}')
    assert live is not None
    millis, seq = parse_id(live)
    own = SpoolEntry(
        kind=KIND,
        key=f"run-twice/{millis + 5}-0",
        group="run-twice",
        body={"run": "run-twice", "id": f"{millis + 5}-0", "e": "text_chunk", "d": "{}"},
    )
    # An entry whose id the stream has passed (another host's clock was ahead), here the very
    # id of the live entry, gets a new id.
    behind = SpoolEntry(
        kind=KIND,
        key="run-twice/behind",
        group="run-twice",
        body={"run": "run-twice", "id": f"{millis}-{seq}", "e": "text_chunk", "d": '{"n":2}'},
    )
    for item in (own, own, behind, behind):  # a replay cut short after applying, then again
        replay(item)
    stored = parts.client.xrange(stream_key("run-twice"))
    assert len(stored) == 3
    assert stored[1][0] == f"{millis + 5}-0"
    assert parse_id(stored[2][0]) > parse_id(stored[1][0])
    assert stored[2][1]["d"] == '{"n":2}'


def test_event_counts_taken_during_an_outage_are_added_once(parts: Parts) -> None:
    counters = RedisEventCounters(parts.client, parts.spool)
    minute = 29_000_000
    counters.add({(minute, "app_created"): [2, 1, 30.0]})
    parts.server.kill()
    counters.add({(minute, "app_created"): [3, 0, 12.5]})
    counters.add({(minute, "app_created"): [1, 1, 1.0]})
    assert parts.spool.stats().entries == 2
    [spooled, _] = list(parts.spool.entries())
    parts.server.start()
    wait_until(lambda: parts.spool.stats().entries == 0, timeout=20, what="spool replayed")
    counters._replay(spooled)  # applied once more (a crash before the cursor write): no effect
    totals = counters.read([minute], ["app_created"])
    assert totals["app_created"] == [6, 2, 43.5]


def test_the_runtime_spools_run_events_and_reports_the_spool(settings: Settings) -> None:
    runtime = create_runtime(settings)
    try:
        assert isinstance(runtime.streams.channel, SpoolingRunChannel)
        assert runtime.spool is not None
        assert runtime.spool.directory == settings.var_dir / "spool"
        ready = runtime.readiness.ready().as_dict()["components"]
        assert ready["spool"]["level"] == "healthy"
        assert ready["spool"]["threshold"] == {"warning": 0.5, "critical": 0.9}
        health = runtime.health.check().as_dict()["components"]
        assert health["spool"]["ok"] is True
        body = runtime.metrics.render().decode()
        assert "relay_spool_bytes 0.0" in body
        assert "relay_spool_full 0.0" in body
    finally:
        runtime.close()


def sse_over_http(api: Api, path: str, headers: dict[str, str], count: int | None) -> list[Any]:
    """Events of the SSE endpoint (only those with an id), up to ``count`` or the stream's end."""
    response = api.client.get(path, headers=headers, buffered=False)
    assert response.status_code == 200, response.status_code
    parser = sse.SSEParser()
    messages: list[Any] = []
    try:
        for chunk in response.response:
            text = chunk.decode() if isinstance(chunk, bytes) else chunk
            messages.extend(m for m in parser.feed(text) if m.has_id)
            if count is not None and len(messages) >= count:
                break
    finally:
        response.close()
    return messages


def test_an_sse_client_resumes_over_http_after_the_outage(
    settings: Settings, tmp_path: Path
) -> None:
    server = OwnRedis(tmp_path / "redis", aof=True).start()
    own = settings.model_copy(
        update={
            "redis": settings.redis.model_copy(update={"url": server.url}),
            "spool": settings.spool.model_copy(update={"replay_interval": 0.2}),
        }
    )
    try:
        with admin_api(own) as api:
            tenant = api.create_tenant()
            run_id = str(uuid.uuid4())
            owner = end_user_id(tenant.id, "ann")
            api.add(
                WorkflowRun(
                    id=run_id,
                    tenant_id=tenant.id,
                    app_id="app",
                    triggered_from="app-run",
                    version="published",
                    graph={},
                    inputs={},
                    status="running",
                    created_by_role=CreatorRole.END_USER,
                    created_by=owner,
                )
            )
            publisher = api.runtime.streams.manager(run_id, owner)
            path = f"/v1/workflows/runs/{run_id}/events?user=ann"
            before = [publisher.publish(TextChunkEvent(text=f"before {i}")) for i in range(3)]
            seen = sse_over_http(api, path, tenant.headers, count=3)
            assert [m.id for m in seen] == before

            server.kill()
            during = [publisher.publish(TextChunkEvent(text=f"during {i}")) for i in range(4)]
            server.start()
            after = [publisher.publish(TextChunkEvent(text="after"))]
            after.append(publisher.publish(WorkflowSucceededEvent(), final=True))
            spool = api.runtime.spool
            assert spool is not None
            wait_until(lambda: spool.stats().entries == 0, timeout=30, what="spool replayed")

            resumed = sse_over_http(
                api, path, {**tenant.headers, "Last-Event-ID": seen[-1].id}, count=None
            )
            assert [m.id for m in resumed] == during + after
            assert [m.event for m in resumed][-1] == "workflow_succeeded"
            assert [m.json().get("text") for m in resumed[:-1]] == [
                *(f"during {i}" for i in range(4)),
                "after",
            ]
    finally:
        server.stop()
