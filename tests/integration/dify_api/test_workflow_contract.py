"""Workflow apps through ``/dify/v1``, checked against Dify's Service API reference:
``POST /workflows/run`` (blocking and streaming), ``GET /workflows/run/{id}``,
``POST /workflows/tasks/{task_id}/stop``, ``GET /workflows/logs``, the events' fields."""

from __future__ import annotations

from typing import Any

from relay.config import Settings
from tests.integration.dify_api.support import Dify, app_key, dify_stack, names, parse_stream
from tests.integration.streaming.support import workflow_graph

NODE_FIELDS = {
    "id", "node_id", "node_type", "title", "index", "predecessor_node_id", "inputs",
    "created_at",
}  # fmt: skip
FINISHED_FIELDS = NODE_FIELDS | {
    "process_data", "outputs", "status", "error", "elapsed_time", "execution_metadata",
}  # fmt: skip
RUN_FIELDS = {
    "id", "workflow_id", "status", "outputs", "error", "elapsed_time", "total_tokens",
    "total_steps", "created_at", "finished_at",
}  # fmt: skip


def _check_envelope(event: dict[str, Any], run_id: str) -> None:
    assert event["task_id"] == run_id
    assert event["workflow_run_id"] == run_id
    assert isinstance(event["data"], dict)


def test_a_workflow_runs_streamed_and_blocking_with_dify_fields(settings: Settings) -> None:
    with dify_stack(settings) as stack:
        app_id = stack.publish_app(workflow_graph(2))
        dify = Dify(stack.api, app_key(stack, app_id))

        events = dify.stream("/workflows/run", {"inputs": {"topic": "owls"}, "user": "abc-123"})
        seq = names(events)
        assert seq[0] == "workflow_started"
        assert seq[-1] == "workflow_finished"
        assert seq.count("node_started") == seq.count("node_finished") == 4
        assert "text_chunk" in seq
        assert "message" not in seq
        run_id = events[0]["workflow_run_id"]
        for event in events:
            if event["event"] != "ping":
                _check_envelope(event, run_id)
        started = events[0]["data"]
        assert started["id"] == run_id
        assert started["inputs"] == {"topic": "owls"}
        assert isinstance(started["created_at"], int)
        assert started["workflow_id"] == app_id
        nodes = [e["data"] for e in events if e["event"] == "node_started"]
        assert all(set(n) >= NODE_FIELDS for n in nodes)
        assert [n["index"] for n in nodes] == [1, 2, 3, 4]
        assert [n["node_id"] for n in nodes] == ["start", "llm1", "llm2", "end"]
        assert nodes[1]["predecessor_node_id"] == "start"
        finished = [e["data"] for e in events if e["event"] == "node_finished"]
        assert all(set(n) >= FINISHED_FIELDS for n in finished)
        assert {n["status"] for n in finished} == {"succeeded"}
        chunk = next(e["data"] for e in events if e["event"] == "text_chunk")
        assert set(chunk) == {"text", "from_variable_selector"}
        end = events[-1]["data"]
        assert set(end) >= RUN_FIELDS
        assert end["status"] == "succeeded"
        assert end["total_steps"] == 4
        assert end["outputs"]["text1"].startswith("[offline reply")
        assert isinstance(end["finished_at"], int)
        assert end["total_tokens"] > 0

        blocking = dify.ok(
            "POST", "/workflows/run",
            json={"inputs": {"topic": "owls"}, "user": "abc-123", "response_mode": "blocking"},
        )  # fmt: skip
        assert set(blocking) == {"task_id", "workflow_run_id", "data"}
        assert blocking["task_id"] == blocking["workflow_run_id"] == blocking["data"]["id"]
        assert set(blocking["data"]) >= RUN_FIELDS
        assert blocking["data"]["status"] == "succeeded"
        assert blocking["data"]["outputs"] == end["outputs"]

        detail = dify.ok("GET", f"/workflows/run/{run_id}")
        assert RUN_FIELDS | {"inputs"} <= set(detail)
        assert detail["inputs"] == {"topic": "owls"}
        assert detail["outputs"] == end["outputs"]

        logs = dify.ok("GET", "/workflows/logs?limit=1")
        assert logs["page"] == 1
        assert logs["limit"] == 1
        assert logs["total"] == 2
        assert logs["has_more"] is True
        entry = logs["data"][0]
        assert entry["workflow_run"]["id"] == blocking["workflow_run_id"]
        assert entry["created_from"] == "service-api"
        assert entry["created_by_role"] == "end_user"
        failed = dify.ok("GET", "/workflows/logs?status=failed")
        assert failed["total"] == 0
        assert failed["data"] == []
        found = dify.ok("GET", "/workflows/logs?keyword=owls")
        assert found["total"] == 2


def test_a_streamed_workflow_stops_by_task_id_and_ends_with_workflow_finished(
    settings: Settings,
) -> None:
    with dify_stack(settings, token_delay=0.02, reply="word " * 300) as stack:
        app_id = stack.publish_app(workflow_graph(1))
        dify = Dify(stack.api, app_key(stack, app_id))
        body = {"inputs": {"topic": "x"}, "user": "u", "response_mode": "streaming"}
        response = dify.call("POST", "/workflows/run", json=body, buffered=False)
        assert response.status_code == 200
        seen: list[dict[str, Any]] = []
        text = ""
        chunks = response.response
        for piece in chunks:
            text += piece.decode()
            blocks, _, text = text.rpartition("\n\n")
            seen += parse_stream(blocks + "\n\n") if blocks else []
            if any(e["event"] == "text_chunk" for e in seen) and len(seen) < 1000:
                task_id = seen[1]["task_id"]
                assert dify.ok("POST", f"/workflows/tasks/{task_id}/stop", json={"user": "u"}) == {
                    "result": "success"
                }
                break
        for piece in chunks:
            text += piece.decode()
        seen += parse_stream(text) if text.strip() else []
        response.close()
        assert seen[0] == {"event": "ping"}  # the stream opens with a ping
        seen = [e for e in seen if e["event"] != "ping"]
        assert seen[-1]["event"] == "workflow_finished"
        assert seen[-1]["data"]["status"] == "stopped"
        assert dify.ok("GET", f"/workflows/run/{seen[0]['task_id']}")["status"] == "stopped"
        # Someone else's user cannot stop it, nor can an unknown task be stopped.
        dify.error("POST", "/workflows/tasks/nope/stop", 404, "not_found", json={"user": "u"})
