"""Shared pieces of the streaming tests (no tests here): a served relay, graphs, an SSE client.

``streaming_stack(settings)`` serves one or more real relay apps (sharing Redis and the database,
like API replicas) on loopback with werkzeug's threaded server, and a real Celery worker on the
workflow queues; ``SSEClient`` reads a response with httpx streaming and relay's SSE parser.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from relay.app_factory import create_app
from relay.config import Settings
from relay.runtime import Runtime
from relay.streaming.sse import SSEMessage, SSEParser
from tests.conftest import migrated_external_db_in_use, run_worker
from tests.integration.test_api_support import Api, TenantCredentials, admin_settings

WORKFLOW_QUEUES = ["workflow_sandbox", "workflow_professional", "workflow_team", "workflow_storage"]
LLM_MODEL = {"provider": "openai", "name": "gpt-4o", "mode": "chat", "completion_params": {}}
PING = "ping"


# --- graphs in Dify's shape ---------------------------------------------------------------------


def node(node_id: str, node_type: str, **data: Any) -> dict[str, Any]:
    return {"id": node_id, "data": {"type": node_type, "title": node_id.title(), **data}}


def edge(source: str, target: str) -> dict[str, Any]:
    return {
        "id": f"{source}-{target}",
        "source": source,
        "target": target,
        "sourceHandle": "source",
    }


def llm(node_id: str, prompt: str, *, memory: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "model": LLM_MODEL,
        "prompt_template": [{"role": "user", "text": prompt}],
    }
    if memory:
        data["memory"] = {"window": {"enabled": True, "size": 10}}
    return node(node_id, "llm", **data)


def workflow_graph(llm_nodes: int = 1) -> dict[str, Any]:
    """start(topic) -> llm1 -> ... -> llmN -> end: every llm's text streams through the end node."""
    start = node("start", "start", variables=[{"variable": "topic", "type": "text-input"}])
    llms = [
        llm(f"llm{i}", f"Part {i} about {{{{#start.topic#}}}}") for i in range(1, llm_nodes + 1)
    ]
    outputs = [
        {"variable": f"text{i}", "value_selector": [f"llm{i}", "text"]}
        for i in range(1, llm_nodes + 1)
    ]
    end = node("end", "end", outputs=outputs)
    chain = ["start", *(n["id"] for n in llms), "end"]
    return {
        "nodes": [start, *llms, end],
        "edges": [edge(a, b) for a, b in itertools.pairwise(chain)],
    }


def chat_graph() -> dict[str, Any]:
    """start -> llm (with memory, answers sys.query) -> answer."""
    start = node("start", "start", variables=[])
    answer = node("answer", "answer", answer="{{#llm.text#}}")
    return {
        "nodes": [start, llm("llm", "You answer briefly.", memory=True), answer],
        "edges": [edge("start", "llm"), edge("llm", "answer")],
    }


# --- a served relay ------------------------------------------------------------------------------


@dataclass
class Served:
    """One relay app served over HTTP on loopback."""

    app: Flask
    server: BaseWSGIServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.app.extensions["relay"]
        return runtime


@dataclass
class Stack:
    """Served apps (replicas), the admin driver of the first, and a tenant to act as."""

    servers: list[Served]
    api: Api
    tenant: TenantCredentials
    apps: dict[str, str] = field(default_factory=dict)

    @property
    def runtime(self) -> Runtime:
        return self.servers[0].runtime

    @property
    def url(self) -> str:
        return self.servers[0].url

    def publish_app(self, graph: dict[str, Any], mode: str = "workflow", tenant: Any = None) -> str:
        """Create an app with ``graph`` as its published workflow; returns its id."""
        who = tenant or self.tenant
        app_id = self.api.ok("POST", "/v1/apps", who, 201, json={"name": "run", "mode": mode})["id"]
        self.api.ok("PUT", f"/v1/apps/{app_id}/workflows/draft", who, json={"graph": graph})
        self.api.ok("POST", f"/v1/apps/{app_id}/workflows/publish", who)
        return str(app_id)


def streaming_settings(
    settings: Settings, *, token_delay: float = 0.002, **streaming: Any
) -> Settings:
    """Test timings: quick beats and stop polls, a small token delay, long enough limits."""
    values: dict[str, Any] = {
        "heartbeat_interval": 0.2,
        "stop_poll_interval": 0.05,
        "stop_grace": 1.0,
        "worker_lost_after": 1.0,
        **streaming,
    }
    return admin_settings(settings).model_copy(
        update={
            "streaming": settings.streaming.model_copy(update=values),
            "workflow": settings.workflow.model_copy(update={"llm_token_delay": token_delay}),
        }
    )


def _serve(settings: Settings) -> Served:
    app = create_app(settings)
    runtime: Runtime = app.extensions["relay"]
    if not migrated_external_db_in_use(settings):
        from relay.models.base import Base

        Base.metadata.create_all(runtime.db.engine)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return Served(app, server, thread)


@contextmanager
def streaming_stack(
    settings: Settings,
    *,
    replicas: int = 1,
    worker: bool = True,
    token_delay: float = 0.002,
    **streaming: Any,
) -> Iterator[Stack]:
    """Serve ``replicas`` apps sharing Redis and the database, with a worker on the first."""
    configured = streaming_settings(settings, token_delay=token_delay, **streaming)
    with ExitStack() as stack:
        servers: list[Served] = []
        for _ in range(replicas):
            served = _serve(configured)
            servers.append(served)
            stack.callback(served.runtime.close)
            stack.callback(served.server.shutdown)
        if worker:
            stack.enter_context(
                run_worker(servers[0].runtime, queues=WORKFLOW_QUEUES, concurrency=4)
            )
        api = Api(servers[0].app)
        yield Stack(servers, api, api.create_tenant())


# --- an SSE client -------------------------------------------------------------------------------


class SSEClient:
    """Reads Server-Sent Events from a relay over real HTTP."""

    def __init__(self, base_url: str, tenant: TenantCredentials, timeout: float = 30.0) -> None:
        self.base_url = base_url
        self.tenant = tenant
        self.client = httpx.Client(base_url=base_url, timeout=timeout, headers=tenant.headers)

    def close(self) -> None:
        self.client.close()

    @contextmanager
    def open(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        last_event_id: str | None = None,
    ) -> Iterator[tuple[httpx.Response, Iterator[SSEMessage]]]:
        """The response and an iterator over its events (stops at the end of the stream)."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        with self.client.stream(
            method, path, json=json, params=params, headers=headers
        ) as response:
            yield response, self._events(response)

    @staticmethod
    def _events(response: httpx.Response) -> Iterator[SSEMessage]:
        parser = SSEParser()
        for text in response.iter_text():
            yield from parser.feed(text)

    def read_all(self, method: str, path: str, **kwargs: Any) -> list[SSEMessage]:
        """Every event until the server ends the stream (pings included)."""
        with self.open(method, path, **kwargs) as (response, events):
            assert response.status_code == 200, response.read()
            return list(events)

    def run(self, app_id: str, user: str, **inputs: Any) -> list[SSEMessage]:
        """POST /v1/workflows/run (streaming) and read to the end."""
        body = {"app_id": app_id, "inputs": inputs, "user": user}
        return self.read_all("POST", "/v1/workflows/run", json=body)


def without_pings(events: list[SSEMessage]) -> list[SSEMessage]:
    return [e for e in events if e.event != PING]


def run_id_of(events: list[SSEMessage]) -> str:
    run_id: str = events[0].json()["workflow_run_id"]
    return run_id
