"""SSE metrics of a served app: streams served (new and resumed), events sent (pings excluded)
and streams open, read from its ``/metrics`` while and after clients read runs."""

from __future__ import annotations

from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from relay.config import Settings
from tests.integration.streaming.support import (
    SSEClient,
    run_id_of,
    streaming_stack,
    without_pings,
    workflow_graph,
)


def _samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(url + "/metrics", timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("relay_sse_")
    }


def _get(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_streams_resumes_and_events_are_counted(settings: Settings) -> None:
    # Slow tokens: the run outlasts the first /metrics read, which must see its stream open.
    with streaming_stack(settings, token_delay=0.02) as stack:
        app_id = stack.publish_app(workflow_graph(llm_nodes=1))
        client = SSEClient(stack.url, stack.tenant)
        body = {"app_id": app_id, "inputs": {"topic": "metrics"}, "user": "alice"}
        with client.open("POST", "/v1/workflows/run", json=body) as (response, events):
            assert response.status_code == 200
            first = next(e for e in events if e.event != "ping")
            during = _samples(stack.url)
            rest = list(events)
        run = [first, *rest]
        run_id = run_id_of(run)
        # A client that lost the stream after the first event resumes from its id.
        resumed = client.read_all(
            "GET",
            f"/v1/workflows/runs/{run_id}/events",
            params={"user": "alice"},
            last_event_id=first.id,
        )
        client.close()
        after = _samples(stack.url)

    assert _get(during, "relay_sse_streams_open", kind="workflow") == 1
    assert _get(after, "relay_sse_streams_open", kind="workflow") == 0
    assert _get(after, "relay_sse_streams_total", kind="workflow", resumed="false") == 1
    assert _get(after, "relay_sse_streams_total", kind="workflow", resumed="true") == 1
    sent = len(without_pings(run)) + len(without_pings(resumed))
    assert _get(after, "relay_sse_events_sent_total", kind="workflow") == sent
    assert _get(after, "relay_sse_streams_total", kind="chat", resumed="false") == 0
