"""Shared pieces of the Dify Service API tests (no tests here).

``dify_stack`` serves relay on loopback with a worker on the workflow queues (as the streaming
tests do) and lets a test choose the offline model's reply and token delay. ``Dify`` drives
``/dify/v1`` through Flask's test client with an app key and reads streams as Dify's
protocol defines them: ``data: {json}`` blocks and ``event: ping`` blocks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from relay.config import Settings
from relay.models import App
from tests.conftest import run_worker
from tests.integration.streaming.support import (
    WORKFLOW_QUEUES,
    Stack,
    _serve,
    edge,
    llm,
    node,
    streaming_settings,
)
from tests.integration.test_api_support import Api

BASE = "/dify/v1"


@contextmanager
def dify_stack(
    settings: Settings, *, token_delay: float = 0.002, reply: str | None = None
) -> Iterator[Stack]:
    """One served relay with a worker; the offline model answers ``reply`` when given."""
    configured = streaming_settings(settings)
    configured = configured.model_copy(
        update={
            "workflow": configured.workflow.model_copy(
                update={"llm_token_delay": token_delay, "llm_reply": reply}
            )
        }
    )
    with ExitStack() as stack:
        served = _serve(configured)
        stack.callback(served.runtime.close)
        stack.callback(served.server.shutdown)
        stack.enter_context(run_worker(served.runtime, queues=WORKFLOW_QUEUES, concurrency=4))
        api = Api(served.app)
        yield Stack([served], api, api.create_tenant())


def app_key(stack: Stack, app_id: str) -> str:
    """A new app key of ``app_id`` through the tenant API."""
    issued = stack.api.ok(
        "POST", f"/v1/apps/{app_id}/api-keys", stack.tenant, 201, json={"name": "sdk"}
    )
    return str(issued["key"])


def set_features(stack: Stack, app_id: str, features: dict[str, Any]) -> None:
    """The workflow features a Dify export would have carried."""
    with stack.runtime.db.transaction() as session:
        row = session.get(App, app_id)
        assert row is not None
        row.workflow_features = features


def parse_stream(body: str) -> list[dict[str, Any]]:
    """Dify's stream as a list of events; a ping block becomes ``{"event": "ping"}``."""
    events: list[dict[str, Any]] = []
    for block in body.split("\n\n"):
        if not block.strip():
            continue
        if block.startswith("data: "):
            events.append(json.loads(block[len("data: ") :]))
        elif block.strip() == "event: ping":
            events.append({"event": "ping"})
        else:
            raise AssertionError(f"not a Dify stream block: {block!r}")
    return events


@dataclass
class Dify:
    """``/dify/v1`` through the test client, as a Dify SDK would call it."""

    api: Api
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.api.client.open(BASE + path, method=method, headers=self.headers, **kwargs)

    def ok(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        response = self.call(method, path, **kwargs)
        assert response.status_code == status, (path, response.status_code, response.get_json())
        return response.get_json()

    def error(self, method: str, path: str, status: int, code: str, **kwargs: Any) -> str:
        """Assert Dify's error body; returns its message."""
        response = self.call(method, path, **kwargs)
        body = response.get_json()
        assert response.status_code == status, (path, response.status_code, body)
        assert set(body) == {"code", "message", "status"}, body
        assert (body["code"], body["status"]) == (code, status), body
        assert isinstance(body["message"], str)
        assert body["message"]
        return str(body["message"])

    def stream(self, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The stream's events without its pings (it opens with one)."""
        response = self.call("POST", path, json={**body, "response_mode": "streaming"})
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.mimetype == "text/event-stream"
        events = parse_stream(response.get_data(as_text=True))
        assert events[0] == {"event": "ping"}
        return [e for e in events if e["event"] != "ping"]


def names(events: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in events if e["event"] != "ping"]


def fan_out_chat_graph() -> dict[str, Any]:
    """A chat app: start -> (llm ``a`` || iteration over the ``docs`` files with an inner llm)
    -> answer joining both."""
    start = node(
        "start",
        "start",
        variables=[{"variable": "docs", "label": "docs", "type": "file-list", "required": True}],
    )
    iteration = node(
        "it",
        "iteration",
        iterator_selector=["start", "docs"],
        output_selector=["inner", "text"],
        start_node_id="it-start",
        is_parallel=False,
    )
    it_start = node("it-start", "iteration-start")
    inner = llm("inner", "Name the file {{#it.index#}}.")
    for child in (it_start, inner):
        child["parentId"] = "it"
        child["data"].update(isInIteration=True, iteration_id="it")
    answer = node("answer", "answer", answer="{{#a.text#}} | {{#it.output#}}")
    return {
        "nodes": [start, llm("a", "Answer {{#sys.query#}}"), iteration, it_start, inner, answer],
        "edges": [
            edge("start", "a"),
            edge("start", "it"),
            edge("it-start", "inner"),
            edge("a", "answer"),
            edge("it", "answer"),
        ],
    }
