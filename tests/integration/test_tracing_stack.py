"""One trace from the HTTP request to the workflow's nodes: the real app, outbox, fair dispatcher,
a real Celery worker and the engine, recorded by the OTel SDK's in-memory exporter."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from relay.adapters.tracing import use_provider
from relay.config import Settings
from tests.integration.streaming.support import streaming_stack, workflow_graph
from tests.unit.test_tracing import ancestry, by_name
from tests.waiting import wait_until


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    sdk = TracerProvider()
    sdk.add_span_processor(SimpleSpanProcessor(memory))
    previous = use_provider(sdk)
    yield memory
    use_provider(previous)
    sdk.shutdown()


def test_one_trace_from_the_request_through_the_worker_to_each_node(
    settings: Settings, exporter: InMemorySpanExporter
) -> None:
    with streaming_stack(settings) as stack:
        app_id = stack.publish_app(workflow_graph(llm_nodes=2))
        exporter.clear()
        body = stack.api.ok(
            "POST",
            "/v1/workflows/run",
            stack.tenant,
            json={
                "app_id": app_id,
                "user": "alice",
                "inputs": {"topic": "traces"},
                "response_mode": "blocking",
            },
        )
        assert body["data"]["status"] == "succeeded"

        def finished() -> tuple[ReadableSpan, ...] | None:
            spans = exporter.get_finished_spans()
            return (
                spans
                if len(by_name(spans, "workflow.run")) == 1
                and by_name(spans, "run relay.workflow.run")
                else None
            )

        spans = wait_until(finished, what="the run's spans")

    request = by_name(spans, "POST /v1/workflows/run")[0]
    assert request.kind is trace.SpanKind.SERVER
    run_task = by_name(spans, "run relay.workflow.run")[0]
    assert run_task.attributes["relay.tenant_id"] == stack.tenant.id
    assert ancestry(spans, run_task) == [
        "run relay.workflow.run",
        "fair.release",
        "fair.submit",
        "outbox.publish",
        "POST /v1/workflows/run",
    ]
    graph = by_name(spans, "workflow.run")[0]
    assert graph.parent is not None
    assert graph.parent.span_id == run_task.context.span_id
    llm_calls = sorted(
        by_name(spans, "llm llm1") + by_name(spans, "llm llm2"), key=lambda s: s.name
    )
    assert [s.name for s in llm_calls] == ["llm llm1", "llm llm2"]
    for call in llm_calls:
        assert call.kind is trace.SpanKind.CLIENT
        assert ancestry(spans, call)[:3] == ["llm " + call.name[4:], "workflow.run", run_task.name]
        assert call.attributes["gen_ai.usage.output_tokens"] > 0
        # Prompts and answers stay out of spans.
        assert not any("traces" in str(v) for v in call.attributes.values())
    nodes = {s.attributes["relay.node_type"] for s in spans if "relay.node_type" in s.attributes}
    assert nodes == {"start", "llm", "end"}
    assert {s.context.trace_id for s in (request, run_task, graph, *llm_calls)} == {
        request.context.trace_id
    }
