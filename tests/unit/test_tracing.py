"""Trace context through the fair scheduler and the task chain, with the OTel SDK's in-memory
exporter (no Redis, no broker): a held task keeps its producer's trace."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from relay.adapters.logs import JsonFormatter
from relay.adapters.tracing import span, use_provider
from relay.config import Plan, TenancySettings
from relay.scheduling.dispatcher import FairDispatcher
from relay.scheduling.settings import SchedulingSettings
from relay.scheduling.tenant_queue_memory import InMemoryTenantQueue
from relay.testing import InMemoryBroker, memory_app
from relay.worker.observability import Traced
from relay.worker.standard import FairLease
from relay.worker.task import ChainedTask

# One slot on the queue: the second tenant's task waits for the first one's completion.
SETTINGS = SchedulingSettings(window=1, lease_ttl=30, dispatch_ttl=60, tick_interval=1000)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    sdk = TracerProvider()
    sdk.add_span_processor(SimpleSpanProcessor(memory))
    previous = use_provider(sdk)
    yield memory
    use_provider(previous)
    sdk.shutdown()


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def ancestry(spans: tuple[ReadableSpan, ...], leaf: ReadableSpan) -> list[str]:
    """Names from ``leaf`` up to its root, following parent ids."""
    ids = {s.context.span_id: s for s in spans}
    names = [leaf.name]
    current = leaf
    while current.parent is not None:
        current = ids[current.parent.span_id]
        names.append(current.name)
    return names


def test_a_held_task_keeps_its_producers_trace_when_another_tenants_completion_releases_it(
    exporter: InMemorySpanExporter,
) -> None:
    broker = InMemoryBroker()
    dispatcher = FairDispatcher(InMemoryTenantQueue(SETTINGS), broker, SETTINGS, TenancySettings())
    # Traced outside the lease: the release on completion happens inside the finishing span.
    app = memory_app(broker, Traced(), FairLease(dispatcher))
    ran: list[tuple[str, str | None]] = []

    @app.task(base=ChainedTask, bind=True, name="tests.traced.work")
    def work(self: Any, label: str) -> str:
        ran.append((label, self.tenant_id))
        return label

    try:
        with span("request a"):
            dispatcher.submit("tenant-a", Plan.SANDBOX, work.name, ["a"], queue="monitor")
        with span("request b"):
            dispatcher.submit("tenant-b", Plan.SANDBOX, work.name, ["b"], queue="monitor")
        assert [m.args for m in broker.messages] == [["a"]], "b is held: one slot"
        broker.join()
    finally:
        dispatcher.close()
    assert ran == [("a", "tenant-a"), ("b", "tenant-b")]

    spans = exporter.get_finished_spans()
    runs = {s.attributes["relay.tenant_id"]: s for s in by_name(spans, f"run {work.name}")}
    request_a = by_name(spans, "request a")[0]
    request_b = by_name(spans, "request b")[0]
    assert ancestry(spans, runs["tenant-a"]) == [
        f"run {work.name}",
        "fair.release",
        "fair.submit",
        "request a",
    ]
    # b was released from inside a's run, yet its trace is b's request...
    assert ancestry(spans, runs["tenant-b"]) == [
        f"run {work.name}",
        "fair.release",
        "fair.submit",
        "request b",
    ]
    assert runs["tenant-b"].context.trace_id == request_b.context.trace_id
    assert runs["tenant-b"].context.trace_id != request_a.context.trace_id
    # ... and the release that a's completion caused is linked to a's run.
    release_b = next(
        s
        for s in by_name(spans, "fair.release")
        if s.context.trace_id == request_b.context.trace_id
    )
    assert [link.context.span_id for link in release_b.links] == [runs["tenant-a"].context.span_id]
    assert runs["tenant-b"].kind is trace.SpanKind.CONSUMER
    assert runs["tenant-b"].attributes["messaging.destination.name"] == "monitor"


def test_a_plain_publish_carries_the_current_context_and_a_retry_keeps_it(
    exporter: InMemorySpanExporter,
) -> None:
    broker = InMemoryBroker()
    app = memory_app(broker, Traced())
    attempts: list[int] = []

    @app.task(base=ChainedTask, bind=True, name="tests.traced.flaky")
    def flaky(self: Any) -> str:
        attempts.append(self.request.retries)
        if len(attempts) == 1:
            raise ConnectionError("transient")
        return "ok"

    flaky.retry_policy = None
    with span("caller"):
        flaky.delay()
    broker.join()
    spans = exporter.get_finished_spans()
    runs = by_name(spans, f"run {flaky.name}")
    assert len(runs) == 2
    caller = by_name(spans, "caller")[0]
    for run in runs:
        assert ancestry(spans, run) == [f"run {flaky.name}", "caller"]
        assert run.context.trace_id == caller.context.trace_id


def test_json_log_lines_carry_the_trace_and_span_ids(exporter: InMemorySpanExporter) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.traced")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("outside")
        with span("traced work") as current:
            logger.warning("inside")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    outside, inside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert "trace_id" not in outside
    context = current.get_span_context()
    assert inside["trace_id"] == trace.format_trace_id(context.trace_id)
    assert inside["span_id"] == trace.format_span_id(context.span_id)
