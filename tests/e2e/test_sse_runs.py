"""Workflow runs over real HTTP: a real worker runs them, an SSE client reads what they stream."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from relay.config import Settings
from relay.models import Message, WorkflowRun
from relay.streaming import to_queue_event
from relay.tasks.workflow_run import llm_settings
from relay.workflow import create_engine, create_services, graph_from_dict
from tests.conftest import run_worker
from tests.integration.streaming.support import (
    WORKFLOW_QUEUES,
    SSEClient,
    Stack,
    chat_graph,
    run_id_of,
    streaming_stack,
    without_pings,
    workflow_graph,
)
from tests.integration.test_api_support import captured_events
from tests.waiting import wait_until

VOLATILE = {"id", "start_at", "finished_at", "elapsed_time", "workflow_run_id"}
LONG_REPLY = " ".join(f"token{i}" for i in range(200))


def normalized(event: dict[str, Any]) -> dict[str, Any]:
    """An event without what differs between two runs of the same graph (ids, times, and the
    run's own system variables, which the start node exposes as ``sys.*`` outputs)."""
    kept = {k: v for k, v in event.items() if k not in VOLATILE}
    if isinstance(kept.get("outputs"), dict):
        kept["outputs"] = {
            k: v for k, v in kept["outputs"].items() if not k.startswith("sys.") or k == "sys.files"
        }
    return kept


@pytest.fixture
def stack(settings: Settings) -> Iterator[Stack]:
    with streaming_stack(settings) as served:
        yield served


@pytest.fixture
def client(stack: Stack) -> Iterator[SSEClient]:
    sse = SSEClient(stack.url, stack.tenant)
    yield sse
    sse.close()


def test_streamed_events_equal_the_engines_events_converted(
    stack: Stack, client: SSEClient
) -> None:
    graph = workflow_graph(llm_nodes=2)
    app_id = stack.publish_app(graph)

    streamed = without_pings(client.run(app_id, "alice", topic="streams"))

    engine = create_engine(
        graph_from_dict(graph),
        inputs={"topic": "streams"},
        services=create_services(llm=llm_settings(stack.runtime.settings.workflow)),
    )
    converted = [to_queue_event(e) for e in engine.run()]
    expected = [normalized(q.model_dump(mode="json")) for q in converted if q is not None]
    assert [normalized(e.json()) for e in streamed] == expected
    assert [e.event for e in streamed] == [e["event"] for e in expected]
    # Every event has its stream id, strictly increasing: the SSE ids clients resume from.
    ids = [tuple(map(int, str(e.id).split("-"))) for e in streamed]
    assert all(e.has_id for e in streamed)
    assert ids == sorted(set(ids))
    assert streamed[-1].event == "workflow_succeeded"

    run_id = run_id_of(streamed)
    assert {e.json()["workflow_run_id"] for e in streamed} == {run_id}
    outputs = streamed[-1].json()["outputs"]
    # The record is final as soon as the stream ends; node executions follow through the
    # workflow storage tasks.
    detail = client.client.get(f"/v1/workflows/runs/{run_id}", params={"user": "alice"}).json()
    assert (detail["status"], detail["outputs"]) == ("succeeded", outputs)
    assert detail["total_steps"] == 4
    assert detail["total_tokens"] > 0

    def nodes_stored() -> list[dict[str, Any]] | None:
        found = client.client.get(f"/v1/workflows/runs/{run_id}", params={"user": "alice"})
        nodes: list[dict[str, Any]] = found.json()["node_executions"]
        done = [n for n in nodes if n["status"] == "succeeded"]
        return nodes if len(done) == 4 else None

    nodes = wait_until(nodes_stored, timeout=20, what="node executions to be stored")
    assert [n["node_id"] for n in nodes] == ["start", "llm1", "llm2", "end"]
    assert nodes[1]["execution_metadata"]["provider"] == "offline"
    assert nodes[1]["outputs"]["text"] == outputs["text1"]


def test_blocking_mode_returns_the_final_outputs(stack: Stack, client: SSEClient) -> None:
    app_id = stack.publish_app(workflow_graph(llm_nodes=1))
    body = {"app_id": app_id, "inputs": {"topic": "x"}, "user": "bob", "response_mode": "blocking"}
    answer = client.client.post("/v1/workflows/run", json=body)
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert data["status"] == "succeeded"
    assert data["outputs"]["text1"].startswith("[offline reply ")
    assert data["id"] == answer.json()["workflow_run_id"]


def test_chat_messages_stream_the_answer_and_end_with_message_end(
    stack: Stack, client: SSEClient
) -> None:
    app_id = stack.publish_app(chat_graph(), mode="advanced-chat")
    body = {"app_id": app_id, "query": "What is relay?", "user": "carol"}
    with captured_events(stack.runtime) as emitted:
        events = without_pings(client.read_all("POST", "/v1/chat-messages", json=body))
    names = [e.event for e in events]
    assert names[0] == "workflow_started"
    assert names[-2:] == ["workflow_succeeded", "message_end"]
    answer = "".join(e.json()["text"] for e in events if e.event == "text_chunk")
    end = events[-1].json()
    assert end["answer"] == answer
    assert "What is relay?" in answer  # the offline reply echoes the user's turn
    assert end["usage"]["provider"] == "offline"
    rows = stack.api.rows(Message, id=end["message_id"])
    assert len(rows) == 1
    assert (rows[0].answer, rows[0].query) == (answer, "What is relay?")
    assert rows[0].workflow_run_id == run_id_of(events)
    assert rows[0].conversation_id == end["conversation_id"]
    assert [name for name, _ in emitted] == ["message_was_created"]

    # The next turn continues the conversation: its prompt carries the first turn (memory).
    follow = {**body, "query": "And then?", "conversation_id": end["conversation_id"]}
    second = client.client.post("/v1/chat-messages", json={**follow, "response_mode": "blocking"})
    assert second.status_code == 200, second.text
    result = second.json()
    assert result["conversation_id"] == end["conversation_id"]
    assert result["status"] == "succeeded"
    assert "And then?" in result["answer"]
    assert result["answer"] != answer
    with stack.runtime.db.session() as session:
        run = session.get(WorkflowRun, result["workflow_run_id"])
        assert run is not None
        stored_answer = (run.outputs or {}).get("answer", "")
    assert stored_answer == result["answer"]


def test_runs_are_hidden_from_other_users_and_tenants(stack: Stack, client: SSEClient) -> None:
    app_id = stack.publish_app(workflow_graph(llm_nodes=1))
    run_id = run_id_of(client.run(app_id, "alice", topic="t"))
    other_tenant = stack.api.create_tenant("other")
    stranger = SSEClient(stack.url, other_tenant)
    try:
        for who, user in ((client, "mallory"), (stranger, "alice")):
            assert (
                who.client.get(f"/v1/workflows/runs/{run_id}", params={"user": user}).status_code
                == 404
            )
            events = who.client.get(f"/v1/workflows/runs/{run_id}/events", params={"user": user})
            assert events.status_code == 404
            stop = who.client.post(f"/v1/workflows/runs/{run_id}/stop", json={"user": user})
            assert stop.status_code == 404
    finally:
        stranger.close()
    assert (
        client.client.get(f"/v1/workflows/runs/{run_id}", params={"user": "alice"}).status_code
        == 200
    )


def test_a_finished_run_replays_to_its_terminal_event_and_closes(
    stack: Stack, client: SSEClient
) -> None:
    app_id = stack.publish_app(workflow_graph(llm_nodes=1))
    first = without_pings(client.run(app_id, "dave", topic="t"))
    run_id = run_id_of(first)
    path = f"/v1/workflows/runs/{run_id}/events"
    replay = client.read_all("GET", path, params={"user": "dave"})
    assert [(e.id, e.data) for e in replay] == [(e.id, e.data) for e in first]
    tail = client.read_all("GET", path, params={"user": "dave"}, last_event_id=first[-3].id)
    assert [e.id for e in tail] == [e.id for e in first[-2:]]
    # A resume after the terminal event: 204, which makes a browser's EventSource stop.
    done = client.client.get(
        path, params={"user": "dave"}, headers={"Last-Event-ID": str(first[-1].id)}
    )
    assert (done.status_code, done.content) == (204, b"")
    bad = client.client.get(path, params={"user": "dave"}, headers={"Last-Event-ID": "nope"})
    assert bad.status_code == 400


def test_stop_during_a_streaming_llm_node_aborts_within_a_second(settings: Settings) -> None:
    with streaming_stack(settings) as stack:
        app_id = stack.publish_app(workflow_graph(llm_nodes=1))
        slow = stack.runtime.settings.workflow.model_copy(
            update={"llm_token_delay": 0.05, "llm_reply": LONG_REPLY}
        )
        stack.runtime.settings = stack.runtime.settings.model_copy(update={"workflow": slow})
        client = SSEClient(stack.url, stack.tenant)
        body = {"app_id": app_id, "inputs": {"topic": "t"}, "user": "erin"}
        seen: list[str] = []
        stopped_at: list[float] = []
        with client.open("POST", "/v1/workflows/run", json=body) as (response, events):
            run_id = response.headers["X-Relay-Run-Id"]
            for event in events:
                seen.append(event.event)
                if event.event == "text_chunk" and not stopped_at:
                    stop = client.client.post(
                        f"/v1/workflows/runs/{run_id}/stop", json={"user": "erin"}
                    )
                    assert stop.status_code == 200, stop.text
                    assert stop.json()["stopping"] is True
                    stopped_at.append(time.monotonic())
            ended = time.monotonic()
        assert seen[-1] == "stop"
        assert ended - stopped_at[0] < 1.0
        assert seen.count("text_chunk") < 40  # far from the 200 tokens of the full reply
        detail = client.client.get(f"/v1/workflows/runs/{run_id}", params={"user": "erin"}).json()
        assert detail["status"] == "stopped"
        # Stopping a run that ended changes nothing.
        again = client.client.post(f"/v1/workflows/runs/{run_id}/stop", json={"user": "erin"})
        assert again.json() == {"result": "success", "stopping": False, "status": "stopped"}
        client.close()


def test_a_stop_before_any_worker_picks_the_run_up_aborts_it_on_arrival(settings: Settings) -> None:
    with streaming_stack(settings, worker=False) as stack:
        app_id = stack.publish_app(workflow_graph(llm_nodes=1))
        client = SSEClient(stack.url, stack.tenant)
        body = {"app_id": app_id, "inputs": {"topic": "t"}, "user": "fay"}
        with client.open("POST", "/v1/workflows/run", json=body) as (response, _):
            run_id = response.headers["X-Relay-Run-Id"]
        stop = client.client.post(f"/v1/workflows/runs/{run_id}/stop", json={"user": "fay"})
        assert stop.json()["stopping"] is True
        with run_worker(stack.runtime, queues=WORKFLOW_QUEUES):
            events = without_pings(
                client.read_all(
                    "GET", f"/v1/workflows/runs/{run_id}/events", params={"user": "fay"}
                )
            )
        # Nothing but the terminal event is published after a stop; the worker wrote it (an id).
        assert [(e.event, e.has_id) for e in events] == [("stop", True)]
        with stack.runtime.db.session() as session:
            assert (
                session.scalar(select(WorkflowRun.status).where(WorkflowRun.id == run_id))
                == "stopped"
            )
        client.close()
