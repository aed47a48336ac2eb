"""The Dify stream mapper on its own: queue events in, Dify's events out (no I/O)."""

from __future__ import annotations

import json
from typing import Any

from relay.api.dify.stream import PING_FRAME, DifyStream
from relay.streaming import StreamItem


def _stream(mode: str = "advanced-chat", **snapshot: Any) -> DifyStream:
    record = {"status": "succeeded", "outputs": {"answer": "hi"}, "elapsed_time": 1.5,
              "total_tokens": 7, "total_steps": 3, "finished_at": None, **snapshot}  # fmt: skip
    return DifyStream(
        mode=mode, run_id="run", app_id="app", created_at=100, inputs={"q": 1},
        finished=lambda: record, message_id="msg", conversation_id="conv",
    )  # fmt: skip


def test_agent_events_map_by_name_and_unknown_events_are_skipped() -> None:
    stream = _stream()
    (thought,) = stream.events(
        "agent_thought", {"event": "agent_thought", "id": "t1", "position": 2, "thought": "hmm",
                          "tool": "current_time", "tool_input": "{}", "observation": "noon"},
    )  # fmt: skip
    assert thought["event"] == "agent_thought"
    assert (thought["id"], thought["position"], thought["tool"]) == ("t1", 2, "current_time")
    assert (thought["message_id"], thought["conversation_id"]) == ("msg", "conv")
    (log,) = stream.events("agent_log", {"event": "agent_log", "label": "call", "status": "ok"})
    assert log["data"] == {"label": "call", "status": "ok"}
    (message,) = stream.events("agent_message", {"text": "Hel"})
    assert (message["event"], message["answer"], message["id"]) == ("agent_message", "Hel", "msg")
    assert stream.events("a_future_event", {"x": 1}) == []


def test_iteration_nodes_stream_only_as_iteration_events_and_pings_are_event_lines() -> None:
    stream = _stream(mode="workflow")
    started = {
        "id": "e1",
        "node_id": "it",
        "node_type": "iteration",
        "start_at": "2026-01-01T00:00:00+00:00",
    }
    assert stream.events("node_started", started) == []
    (iteration,) = stream.events("iteration_start", {**started, "inputs": {"items": [1]}})
    assert iteration["event"] == "iteration_started"
    assert iteration["data"]["created_at"] == 1767225600
    items = [
        StreamItem(None, "ping", "{}"),
        StreamItem("1-0", "text_chunk", json.dumps({"event": "text_chunk", "text": "a"})),
    ]
    frames = list(stream.frames(iter(items)))
    assert frames[0] == PING_FRAME == b"event: ping\n\n"
    assert frames[1].startswith(b"data: {")
    assert json.loads(frames[1][6:])["data"] == {"text": "a", "from_variable_selector": None}


def test_a_failed_chat_run_ends_with_workflow_finished_then_error() -> None:
    stream = _stream(status="failed", error="llm broke")
    finished, error = stream.events("workflow_failed", {"error": "llm broke"})
    assert finished["data"]["status"] == "failed"
    assert finished["data"]["error"] == "llm broke"
    assert error == {
        "event": "error", "task_id": "run", "message_id": "msg", "conversation_id": "conv",
        "status": 400, "code": "completion_request_error", "message": "llm broke",
    }  # fmt: skip
    assert stream.ended


def test_a_stopped_run_finishes_with_status_stopped() -> None:
    stream = _stream(status="running", outputs=None)
    (finished,) = stream.events(
        "stop", {"stopped_by": "user-manual", "reason": "stopped", "outputs": {}}
    )
    assert finished["event"] == "workflow_finished"
    assert finished["data"]["status"] == "stopped"
    assert finished["data"]["error"] == "stopped"
    assert stream.ended


def test_completion_and_basic_chat_streams_carry_messages_only() -> None:
    node = {"id": "e1", "node_id": "llm", "node_type": "llm", "start_at": None}
    for mode in ("completion", "chat"):
        stream = _stream(mode=mode)
        for name in ("workflow_started", "node_started", "node_succeeded", "workflow_succeeded"):
            assert stream.events(name, node) == [], (mode, name)
        assert not stream.ended, "a success is followed by the recorded answer's message_end"
        (chunk,) = stream.events("text_chunk", {"text": "Hel"})
        assert (chunk["event"], chunk["answer"], chunk["message_id"]) == ("message", "Hel", "msg")
        (end,) = stream.events("message_end", {"message_id": "msg", "usage": {"prompt_tokens": 2}})
        assert end["metadata"]["usage"]["prompt_tokens"] == 2
        # A completion belongs to no conversation a client sees; a chat message does.
        for event in (chunk, end):
            assert ("conversation_id" in event) == (mode == "chat"), (mode, event)


def test_a_stopped_or_failed_completion_ends_with_message_end_or_error() -> None:
    stopped = _stream(mode="completion", status="stopped")
    (end,) = stopped.events("stop", {"reason": "stopped by user"})
    assert (end["event"], end["message_id"], stopped.ended) == ("message_end", "msg", True)
    failed = _stream(mode="completion", status="failed", error="llm broke")
    (error,) = failed.events("workflow_failed", {"error": "llm broke"})
    assert (error["event"], error["message"], error["status"]) == ("error", "llm broke", 400)
    assert error["message_id"] == "msg"
    assert "conversation_id" not in error
