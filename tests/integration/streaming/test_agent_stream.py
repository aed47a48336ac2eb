"""An imported chatflow with an agent node, run by a real worker and streamed over SSE: the
agent's rounds arrive as agent_log / agent_thought events, after the start node's events and
before the answer's text."""

from __future__ import annotations

import re
from pathlib import Path

from relay.config import Settings

from .support import SSEClient, streaming_stack, without_pings

FIXTURE = Path(__file__).parents[2] / "fixtures" / "dify_nodes" / "agent-function-calling.yml"


def test_an_agent_chatflow_streams_its_rounds(settings: Settings) -> None:
    with streaming_stack(settings) as stack:
        imported = stack.api.call(
            "POST", "/v1/apps/import?publish=true", stack.tenant, data=FIXTURE.read_text(),
            headers={"Content-Type": "application/x-yaml"},
        )  # fmt: skip
        assert imported.status_code == 201, imported.json
        attention = imported.json["attention"]
        assert any("built-in provider 'time'" in item["message"] for item in attention)
        client = SSEClient(stack.url, stack.tenant)
        try:
            body = {"app_id": imported.json["app"]["id"], "user": "u",
                    "query": 'current_time {"timezone": "UTC"}'}  # fmt: skip
            events = without_pings(client.read_all("POST", "/v1/chat-messages", json=body))
        finally:
            client.close()
    names = [e.event for e in events]
    assert names[-1] == "message_end", names
    first_node = next(e.json() for e in events if e.event == "node_started")
    assert first_node["node_id"] == "start"
    assert names.index("node_started") < names.index("agent_log") < names.index("text_chunk")
    thoughts = [e.json() for e in events if e.event == "agent_thought"]
    assert [t["position"] for t in thoughts] == [1, 2]
    assert thoughts[0]["tool"] == "current_time"
    assert thoughts[0]["tool_input"] == '{"current_time": {"timezone": "UTC"}}'
    answer = "".join(e.json()["text"] for e in events if e.event == "text_chunk")
    assert re.fullmatch(r"\[offline agent reply\] current_time: \d{4}-\d{2}-\d{2}", answer)
    assert events[-1].json()["answer"] == answer
