"""Advanced-chat apps through ``/dify/v1``: chat messages (blocking and streaming), messages,
feedback, suggested questions, conversations (list, rename, variables, delete), files, and the
event sequence of a chat app with parallel branches and an iteration, as Dify documents them."""

from __future__ import annotations

import io
from typing import Any

from relay.config import Settings
from tests.integration.dify_api.support import (
    Dify,
    app_key,
    dify_stack,
    fan_out_chat_graph,
    names,
    set_features,
)
from tests.integration.streaming.support import chat_graph

CONVERSATION_FIELDS = {"id", "name", "inputs", "status", "introduction", "created_at", "updated_at"}
MESSAGE_FIELDS = {
    "id", "conversation_id", "inputs", "query", "answer", "message_files", "feedback",
    "retriever_resources", "agent_thoughts", "created_at",
}  # fmt: skip


def _chat(dify: Dify, query: str, user: str, conversation_id: str = "") -> list[dict[str, Any]]:
    body = {"query": query, "inputs": {}, "user": user, "conversation_id": conversation_id}
    return dify.stream("/chat-messages", body)


def test_a_conversation_over_several_turns_with_messages_and_feedback(
    settings: Settings,
) -> None:
    with dify_stack(settings) as stack:
        app_id = stack.publish_app(chat_graph(), mode="advanced-chat")
        set_features(stack, app_id, {"suggested_questions_after_answer": {"enabled": True}})
        dify = Dify(stack.api, app_key(stack, app_id))

        first = _chat(dify, "What is an owl?", "alice")
        seq = names(first)
        assert seq[0] == "workflow_started"
        assert seq[-2:] == ["workflow_finished", "message_end"]
        assert "message" in seq
        assert "text_chunk" not in seq
        conversation_id = first[-1]["conversation_id"]
        message_id = first[-1]["message_id"]
        for event in first:
            if event["event"] == "ping":
                continue
            # Every event of a chat stream names its conversation and message.
            assert event["conversation_id"] == conversation_id
            assert event.get("message_id") == message_id
            assert event["task_id"] == first[0]["task_id"]
        piece = next(e for e in first if e["event"] == "message")
        assert {"id", "task_id", "message_id", "conversation_id", "answer", "created_at"} <= set(
            piece
        )
        end = first[-1]
        assert end["id"] == message_id
        assert set(end["metadata"]) == {"usage", "retriever_resources"}
        assert end["metadata"]["usage"]["total_tokens"] > 0
        streamed = "".join(e["answer"] for e in first if e["event"] == "message")

        blocking = dify.ok(
            "POST", "/chat-messages",
            json={"query": "And a second question?", "user": "alice", "inputs": {},
                  "conversation_id": conversation_id, "response_mode": "blocking"},
        )  # fmt: skip
        assert blocking["event"] == "message"
        assert blocking["mode"] == "advanced-chat"
        assert blocking["conversation_id"] == conversation_id
        assert blocking["id"] == blocking["message_id"]
        assert blocking["answer"].startswith("[offline reply")
        assert blocking["metadata"]["usage"]["total_tokens"] > 0
        third = _chat(dify, "A third one", "alice", conversation_id)
        assert third[-1]["conversation_id"] == conversation_id

        history = dify.ok("GET", f"/messages?conversation_id={conversation_id}&user=alice")
        assert history["has_more"] is False
        assert [m["query"] for m in history["data"]] == [
            "What is an owl?", "And a second question?", "A third one",
        ]  # fmt: skip
        assert set(history["data"][0]) >= MESSAGE_FIELDS
        assert history["data"][0]["answer"] == streamed
        assert history["data"][0]["id"] == message_id
        older = dify.ok(
            "GET", f"/messages?conversation_id={conversation_id}&user=alice&limit=1"
            f"&first_id={third[-1]['message_id']}",
        )  # fmt: skip
        assert [m["query"] for m in older["data"]] == ["And a second question?"]
        assert older["has_more"] is True

        liked = {"rating": "like", "user": "alice", "content": "good"}
        assert dify.ok("POST", f"/messages/{message_id}/feedbacks", json=liked) == {
            "result": "success"
        }
        history = dify.ok("GET", f"/messages?conversation_id={conversation_id}&user=alice")
        assert history["data"][0]["feedback"] == {"rating": "like"}
        assert history["data"][1]["feedback"] is None
        dify.error(
            "POST", f"/messages/{message_id}/feedbacks", 404, "not_found",
            json={"rating": "like", "user": "mallory"},
        )  # fmt: skip
        dify.error(
            "POST", f"/messages/{message_id}/feedbacks", 400, "invalid_param",
            json={"rating": "love", "user": "alice"},
        )  # fmt: skip

        suggested = dify.ok("GET", f"/messages/{message_id}/suggested?user=alice")
        assert suggested["result"] == "success"
        assert 1 <= len(suggested["data"]) <= 3
        assert all(isinstance(q, str) and q for q in suggested["data"])

        listed = dify.ok("GET", "/conversations?user=alice")
        assert [c["id"] for c in listed["data"]] == [conversation_id]
        assert set(listed["data"][0]) >= CONVERSATION_FIELDS
        assert listed["data"][0]["name"] == "What is an owl?"
        assert dify.ok("GET", "/conversations?user=bob")["data"] == []
        renamed = dify.ok(
            "POST", f"/conversations/{conversation_id}/name", json={"name": "Owls", "user": "alice"}
        )
        assert renamed["name"] == "Owls"
        generated = dify.ok(
            "POST", f"/conversations/{conversation_id}/name",
            json={"auto_generate": True, "user": "alice"},
        )  # fmt: skip
        assert generated["name"]
        assert generated["name"] != "Owls"
        variables = dify.ok("GET", f"/conversations/{conversation_id}/variables?user=alice")
        assert variables == {"limit": 20, "has_more": False, "data": []}

        dify.error(
            "DELETE", f"/conversations/{conversation_id}", 404, "not_found", json={"user": "bob"}
        )
        deleted = dify.call("DELETE", f"/conversations/{conversation_id}", json={"user": "alice"})
        assert deleted.status_code == 204
        assert dify.ok("GET", "/conversations?user=alice")["data"] == []
        dify.error(
            "GET", f"/messages?conversation_id={conversation_id}&user=alice", 404, "not_found"
        )


def test_parallel_branches_and_an_iteration_stream_in_dify_order(settings: Settings) -> None:
    with dify_stack(settings) as stack:
        app_id = stack.publish_app(fan_out_chat_graph(), mode="advanced-chat")
        dify = Dify(stack.api, app_key(stack, app_id))
        uploads = [
            dify.ok(
                "POST",
                "/files/upload",
                201,
                data={"user": "carol", "file": (_file(f"note {i}"), f"note{i}.txt", "text/plain")},
                content_type="multipart/form-data",
            )
            for i in range(2)
        ]
        upload = uploads[0]
        assert set(upload) == {
            "id", "name", "size", "extension", "mime_type", "created_by", "created_at",
        }  # fmt: skip
        assert (upload["name"], upload["size"], upload["extension"]) == ("note0.txt", 6, "txt")
        docs = [
            {"type": "document", "transfer_method": "local_file", "upload_file_id": u["id"]}
            for u in uploads
        ]
        events = dify.stream(
            "/chat-messages", {"query": "Compare", "inputs": {"docs": docs}, "user": "carol"}
        )
        seq = names(events)
        # Dify's order: the run starts first; message_end is the last event, after
        # workflow_finished; every node and branch that starts finishes.
        assert seq[0] == "workflow_started"
        assert seq[-2:] == ["workflow_finished", "message_end"]
        assert events[-2]["data"]["status"] == "succeeded"
        assert seq.count("iteration_started") == seq.count("iteration_completed") == 1
        assert seq.count("iteration_next") == 2
        started = seq.index("iteration_started")
        nexts = [i for i, name in enumerate(seq) if name == "iteration_next"]
        assert started < nexts[0] < nexts[1] < seq.index("iteration_completed")
        branches = [e["data"] for e in events if e["event"] == "parallel_branch_started"]
        ended = [e["data"] for e in events if e["event"] == "parallel_branch_finished"]
        assert {b["parallel_branch_id"] for b in branches} == {"a", "it"}
        assert {b["parallel_branch_id"] for b in ended} == {"a", "it"}
        assert all(b["status"] == "succeeded" for b in ended)
        for data in branches:
            assert {"parallel_id", "parallel_branch_id", "parent_parallel_id", "created_at"} <= set(
                data
            )
        node_events = [e for e in events if e["event"] in ("node_started", "node_finished")]
        # The iteration itself is streamed as iteration_* events only, not as a node.
        assert all(e["data"]["node_type"] != "iteration" for e in node_events)
        starts = [e["data"]["id"] for e in node_events if e["event"] == "node_started"]
        finishes = [e["data"]["id"] for e in node_events if e["event"] == "node_finished"]
        assert sorted(starts) == sorted(finishes)
        assert len(set(starts)) == len(starts)
        inner = [
            e["data"] for e in node_events
            if e["event"] == "node_started" and e["data"]["node_id"] == "inner"
        ]  # fmt: skip
        assert len(inner) == 2
        assert all(d["iteration_id"] == "it" for d in inner)
        branch_a = next(d for d in branches if d["parallel_branch_id"] == "a")
        a_node = next(
            e["data"] for e in node_events if e["data"]["node_id"] == "a"
        )  # fmt: skip
        assert a_node["parallel_id"] == branch_a["parallel_id"]
        done = next(e["data"] for e in events if e["event"] == "iteration_completed")
        assert done["status"] == "succeeded"
        assert len(done["outputs"]["output"]) == 2
        answer = "".join(e["answer"] for e in events if e["event"] == "message")
        assert " | " in answer
        # The uploaded files reached the run as file objects.
        detail = dify.ok("GET", f"/workflows/run/{events[0]['workflow_run_id']}")
        names_in_run = [f.get("filename") for f in detail["inputs"]["docs"]]
        assert names_in_run == ["note0.txt", "note1.txt"]
        assert all("content_base64" not in f for f in detail["inputs"]["docs"])


def _file(text: str) -> io.BytesIO:
    return io.BytesIO(text.encode())
