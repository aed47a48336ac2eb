"""The agent node's function calling through the OpenAI-compatible provider: tools go out as
``tools``, streamed ``tool_calls`` pieces come back, tool results go back as ``tool`` messages."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from relay.workflow import (
    GraphRunSucceededEvent,
    LLMProviderConfig,
    LLMSettings,
    RunInfo,
    SystemVariables,
    create_engine,
    create_services,
    load_dsl,
)
from relay.workflow.tools.base import ToolProviders
from relay.workflow.tools.builtin import TimeProvider
from tests.unit.workflow.test_tool_node import FixedClock

from .servers import LocalServer, _Handler

FIXTURE = Path(__file__).parents[2] / "fixtures" / "dify_nodes" / "agent-function-calling.yml"


class ToolCallingHandler(_Handler):
    """First request: a streamed call of ``current_time`` split over chunks; later requests:
    text that quotes the tool's answer."""

    protocol_version = "HTTP/1.0"

    def do_POST(self) -> None:
        request = json.loads(self._body())
        with self.state.lock:
            self.state.requests.append(request)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        tool_messages = [m for m in request["messages"] if m["role"] == "tool"]
        if not tool_messages:
            pieces = [
                {"index": 0, "id": "call_9", "type": "function",
                 "function": {"name": "current_time", "arguments": ""}},
                {"index": 0, "function": {"arguments": '{"timez'}},
                {"index": 0, "function": {"arguments": 'one": "UTC"}'}},
            ]  # fmt: skip
            for piece in pieces:
                self._event({"choices": [{"index": 0, "delta": {"tool_calls": [piece]}}]})
            self._event({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
        else:
            for text in ["It is ", tool_messages[-1]["content"], "."]:
                self._event({"choices": [{"index": 0, "delta": {"content": text}}]})
            self._event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        self.wfile.write(b"data: [DONE]\n\n")

    def _event(self, data: dict[str, Any]) -> None:
        self.wfile.write(f"data: {json.dumps(data)}\n\n".encode())
        self.wfile.flush()


@pytest.fixture
def model_server() -> Iterator[LocalServer]:
    with LocalServer(ToolCallingHandler) as server:
        yield server


def test_function_calling_through_an_openai_compatible_api(model_server: LocalServer) -> None:
    remote = LLMProviderConfig(kind="openai", base_url=model_server.url + "/v1", model="m1")
    services = create_services(
        llm=LLMSettings(default=remote), tools=ToolProviders([TimeProvider(FixedClock)])
    )
    engine = create_engine(load_dsl(FIXTURE.read_text()), services=services,
                           system=SystemVariables(query="What day is it?"),
                           run_info=RunInfo(tenant_id="t1"))  # fmt: skip
    final = list(engine.run())[-1]
    assert isinstance(final, GraphRunSucceededEvent), final
    assert final.outputs["answer"] == "It is 2026-03-01."
    first, second = model_server.requests
    assert first["tools"] == [{
        "type": "function",
        "function": {"name": "current_time", "description": "the current time", "parameters": {
            "type": "object", "required": [],
            "properties": {"timezone": {"type": "string", "description": "IANA timezone"}}}},
    }]  # fmt: skip
    assert [m["role"] for m in first["messages"]] == ["system", "user"]
    assistant, tool = second["messages"][-2:]
    assert assistant["tool_calls"] == [{"id": "call_9", "type": "function", "function": {
        "name": "current_time", "arguments": '{"timezone": "UTC"}'}}]  # fmt: skip
    assert tool == {"role": "tool", "tool_call_id": "call_9", "content": "2026-03-01"}
    # The third round (maximum_iterations 3) was not needed; round two offered tools still.
    assert "tools" in second
