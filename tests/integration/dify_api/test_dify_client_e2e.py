"""A small Dify client, written only from Dify's Service API reference (plain ``requests`` and
line-by-line SSE parsing), pointed at relay's ``/dify/v1`` over real HTTP: it runs a workflow
app, holds a conversation with an advanced-chat app over several turns, stops a run, uploads a
file and sends feedback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import requests

from relay.config import Settings
from tests.integration.dify_api.support import app_key, dify_stack
from tests.integration.streaming.support import chat_graph, edge, node, workflow_graph


class DifyClient:
    """What an SDK built from Dify's reference does: base URL, app key, JSON and SSE."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {api_key}"

    def _url(self, path: str) -> str:
        return self.base_url + path

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.session.request(method, self._url(path), timeout=30, **kwargs)
        if response.status_code >= 400:
            raise AssertionError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json() if response.content else None

    def stream(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Events of a streaming answer: each ``data:`` line is one JSON event."""
        body = {**body, "response_mode": "streaming"}
        with self.session.post(self._url(path), json=body, stream=True, timeout=30) as response:
            assert response.status_code == 200, response.text
            assert response.headers["Content-Type"].startswith("text/event-stream")
            for line in response.iter_lines(decode_unicode=True):
                if line.startswith("data: "):
                    yield json.loads(line[len("data: ") :])
                elif line.startswith("event: ping"):
                    yield {"event": "ping"}

    def run_workflow(self, inputs: dict[str, Any], user: str) -> list[dict[str, Any]]:
        events = self.stream("/workflows/run", {"inputs": inputs, "user": user})
        return [e for e in events if e["event"] != "ping"]

    def chat(self, query: str, user: str, conversation_id: str = "") -> list[dict[str, Any]]:
        body = {"query": query, "inputs": {}, "user": user, "conversation_id": conversation_id}
        return [e for e in self.stream("/chat-messages", body) if e["event"] != "ping"]

    def upload(self, name: str, content: bytes, mime: str, user: str) -> dict[str, Any]:
        files = {"file": (name, content, mime)}
        result: dict[str, Any] = self.request(
            "POST", "/files/upload", files=files, data={"user": user}
        )
        return result


def test_a_dify_client_runs_chats_stops_uploads_and_rates(settings: Settings) -> None:
    with dify_stack(settings, token_delay=0.01) as stack:
        flow = stack.publish_app(workflow_graph(1))
        chat = stack.publish_app(chat_graph(), mode="advanced-chat")
        base = stack.url + "/dify/v1"
        workflows = DifyClient(base, app_key(stack, flow))
        chats = DifyClient(base, app_key(stack, chat))

        # A workflow run, streamed to its end.
        events = workflows.run_workflow({"topic": "owls"}, "user-1")
        assert events[0]["event"] == "workflow_started"
        assert events[-1]["event"] == "workflow_finished"
        assert events[-1]["data"]["status"] == "succeeded"
        text = "".join(e["data"]["text"] for e in events if e["event"] == "text_chunk")
        assert text == events[-1]["data"]["outputs"]["text1"]
        run = workflows.request("GET", f"/workflows/run/{events[0]['workflow_run_id']}")
        assert run["status"] == "succeeded"

        # Three turns of one conversation.
        conversation_id = ""
        answers = []
        for query in ("Hello", "What did I just say?", "Thanks"):
            turn = chats.chat(query, "user-1", conversation_id)
            assert turn[-1]["event"] == "message_end"
            conversation_id = turn[-1]["conversation_id"]
            answers.append("".join(e["answer"] for e in turn if e["event"] == "message"))
        history = chats.request(
            "GET", "/messages", params={"conversation_id": conversation_id, "user": "user-1"}
        )
        assert [m["answer"] for m in history["data"]] == answers
        # The model saw the earlier turns: the offline reply digests the whole prompt.
        assert len(set(answers)) == 3

        # Feedback on the first answer.
        first = history["data"][0]["id"]
        assert chats.request(
            "POST", f"/messages/{first}/feedbacks", json={"rating": "dislike", "user": "user-1"}
        ) == {"result": "success"}

        # Stop a run by its task id while it streams.
        slow = chats.stream(
            "/chat-messages", {"query": "word " * 200, "inputs": {}, "user": "user-1"}
        )
        seen = []
        for event in slow:
            seen.append(event)
            if event["event"] == "message":
                stopped = chats.request(
                    "POST", f"/chat-messages/{event['task_id']}/stop", json={"user": "user-1"}
                )
                assert stopped == {"result": "success"}
                break
        seen += list(slow)
        assert seen[-1]["event"] == "workflow_finished"
        assert seen[-1]["data"]["status"] == "stopped"

        conversations = chats.request("GET", "/conversations", params={"user": "user-1"})
        assert conversation_id in [c["id"] for c in conversations["data"]]

        # Upload a file and pass it as the file input of a run.
        reader = DifyClient(base, app_key(stack, stack.publish_app(_file_graph())))
        uploaded = reader.upload("notes.md", b"# Owls\n", "text/markdown", "user-1")
        assert uploaded["extension"] == "md"
        assert uploaded["size"] == 7
        doc = {
            "type": "document",
            "transfer_method": "local_file",
            "upload_file_id": uploaded["id"],
        }
        events = reader.run_workflow({"doc": doc}, "user-1")
        assert events[-1]["data"]["status"] == "succeeded"
        out = events[-1]["data"]["outputs"]["doc"]
        assert (out["filename"], out["mime_type"], out["size"]) == ("notes.md", "text/markdown", 7)


def _file_graph() -> dict[str, Any]:
    start = node(
        "start", "start", variables=[{"variable": "doc", "type": "file", "required": True}]
    )
    end = node("end", "end", outputs=[{"variable": "doc", "value_selector": ["start", "doc"]}])
    return {"nodes": [start, end], "edges": [edge("start", "end")]}
