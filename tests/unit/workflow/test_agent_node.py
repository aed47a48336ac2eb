"""The agent node: function calling and ReAct over the offline provider's deterministic tool
plan, streamed rounds as agent_log / agent_thought queue events, iteration limits, errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from relay.streaming.queue_events import (
    QueueAgentLogEvent,
    QueueAgentThoughtEvent,
    TextChunkEvent,
    parse_queue_event,
    to_queue_event,
)
from relay.workflow import GraphRunFailedEvent, GraphRunSucceededEvent
from relay.workflow.llm.base import ChatMessage, ChatRequest, FunctionSpec
from relay.workflow.llm.offline_agent import agent_reply
from relay.workflow.tools.base import ToolProviders
from relay.workflow.tools.builtin import TimeProvider

from .helpers import build, edge, make_engine, node, offline_services, run_all, start
from .test_tool_node import FixedClock

TIME_TOOL: dict[str, Any] = {
    "enabled": True, "type": "builtin", "provider_name": "time", "tool_name": "current_time",
    "tool_label": "Current Time",
    "parameters": {"timezone": {"auto": 1, "value": None}, "format": {"auto": 0, "value": "%Y"}},
}  # fmt: skip


def _agent(strategy: str, tools: list[dict[str, Any]], iterations: int = 3,
           provider: str = "langgenius/agent/agent") -> dict[str, Any]:  # fmt: skip
    return node(
        "agent", "agent", agent_strategy_provider_name=provider, agent_strategy_name=strategy,
        agent_parameters={
            "model": {"type": "constant", "value": {"provider": "openai", "model": "gpt-4o"}},
            "tools": {"type": "constant", "value": tools},
            "instruction": {"type": "constant", "value": "Be brief."},
            "query": {"type": "mixed", "value": "{{#sys.query#}}"},
            "maximum_iterations": {"type": "constant", "value": iterations},
        },
    )  # fmt: skip


def _run(agent: dict[str, Any], query: str, tools: ToolProviders | None = None) -> list[Any]:
    graph = build(
        [start(), agent, node("answer", "answer", answer="{{#agent.text#}}")],
        [edge("start", "agent"), edge("agent", "answer")],
    )
    services = offline_services(tools=tools or ToolProviders([TimeProvider(FixedClock)]))
    return run_all(make_engine(graph, query=query, services=services))


def _queued(events: list[Any]) -> list[Any]:
    # Through JSON and back, as a stream entry travels.
    found = [to_queue_event(e) for e in events]
    return [parse_queue_event(q.model_dump_json()) for q in found if q is not None]


@pytest.mark.parametrize("strategy", ["function_calling", "ReAct"])
def test_the_agent_calls_the_tool_then_answers(strategy: str) -> None:
    events = _run(_agent(strategy, [TIME_TOOL]), 'Year? current_time {"timezone": "UTC"}')
    final = events[-1]
    assert isinstance(final, GraphRunSucceededEvent)
    assert final.outputs["answer"] == "[offline agent reply] current_time: 2026"
    queued = _queued(events)
    names = [q.event.value for q in queued]
    first_text = names.index("text_chunk")
    agent_started = next(
        i for i, q in enumerate(queued) if q.event.value == "node_started" and q.node_id == "agent"
    )
    assert agent_started < names.index("agent_log") < first_text
    logs = [(q.label, q.status) for q in queued if isinstance(q, QueueAgentLogEvent)]
    assert logs == [
        ("ROUND 1", "start"), ("CALL current_time", "start"), ("CALL current_time", "success"),
        ("ROUND 1", "success"), ("ROUND 2", "start"), ("ROUND 2", "success"),
    ]  # fmt: skip
    calls = [q for q in queued if isinstance(q, QueueAgentLogEvent) and q.parent_id]
    rounds = {q.id for q in queued if isinstance(q, QueueAgentLogEvent) and not q.parent_id}
    assert {q.parent_id for q in calls} <= rounds
    assert calls[-1].data["output"] == "2026"
    thoughts = [q for q in queued if isinstance(q, QueueAgentThoughtEvent)]
    assert [t.position for t in thoughts] == [1, 2]
    assert thoughts[0].tool == "current_time"
    assert json.loads(thoughts[0].tool_input) == {"current_time": {"timezone": "UTC"}}
    assert json.loads(thoughts[0].observation) == {"current_time": "2026"}
    assert thoughts[0].tool_labels == {"current_time": {"en_US": "Current Time"}}
    assert thoughts[1].tool == ""
    assert thoughts[1].node_id == "agent"
    # The answer's text comes after the tool call; ReAct's action text is never streamed.
    text = "".join(q.text for q in queued if isinstance(q, TextChunkEvent))
    assert text == "[offline agent reply] current_time: 2026"
    assert names.index("text_chunk") > names.index("agent_thought")
    done = next(e for e in events if type(e).__name__ == "NodeRunSucceededEvent"
                and e.node_id == "agent")  # fmt: skip
    assert done.process_data["tool_calls"] == [
        {"tool": "current_time", "input": {"timezone": "UTC"}, "error": None}
    ]
    assert done.metadata["agent_strategy"] == ("react" if strategy == "ReAct" else strategy)


def test_the_last_round_offers_no_tools() -> None:
    events = _run(_agent("function_calling", [TIME_TOOL], iterations=1), "current_time please")
    final = events[-1]
    assert isinstance(final, GraphRunSucceededEvent)
    # No tool ran: the offline provider answers as it answers any prompt.
    assert final.outputs["answer"].startswith("[offline reply ")
    assert final.outputs["answer"].endswith("] current_time please")
    assert not [e for e in _queued(events) if isinstance(e, QueueAgentLogEvent) and e.parent_id]


def test_an_agent_tool_that_is_not_installed_fails_the_node() -> None:
    other = {**TIME_TOOL, "tool_name": "current_time", "provider_name": "time"}
    wiki = {**TIME_TOOL, "provider_name": "wikipedia", "tool_name": "wikipedia_search",
            "parameters": {}}  # fmt: skip
    tools = ToolProviders([TimeProvider(FixedClock)])
    events = _run(_agent("function_calling", [other, wiki], iterations=2),
                  "current_time then wikipedia_search", tools)  # fmt: skip
    final = events[-1]
    # wikipedia is not installed in this source: the node fails before calling the model.
    assert isinstance(final, GraphRunFailedEvent)
    assert "tool provider 'wikipedia' (builtin) is not installed in relay" in final.error
    assert "tool 'wikipedia_search'" in final.error


def test_react_answers_in_its_last_round() -> None:
    zone = {**TIME_TOOL, "tool_name": "current_time"}
    events = _run(_agent("ReAct", [zone], iterations=2), "current_time now")
    thoughts = [e for e in _queued(events) if isinstance(e, QueueAgentThoughtEvent)]
    assert [t.tool for t in thoughts] == ["current_time", ""]
    final = events[-1]
    assert isinstance(final, GraphRunSucceededEvent)
    assert final.outputs["answer"] == "[offline agent reply] current_time: 2026"


def test_a_failing_tool_becomes_an_observation() -> None:
    events = _run(_agent("function_calling", [TIME_TOOL]),
                  'current_time {"timezone": "Mars/Olympus"}')  # fmt: skip
    final = events[-1]
    assert isinstance(final, GraphRunSucceededEvent)
    assert final.outputs["answer"] == (
        "[offline agent reply] current_time: tool error: current_time: unknown timezone "
        "'Mars/Olympus'"
    )
    failed = [e for e in _queued(events) if isinstance(e, QueueAgentLogEvent)
              and e.status == "error"]  # fmt: skip
    assert failed[0].error == "current_time: unknown timezone 'Mars/Olympus'"


def test_a_plugin_strategy_fails_clearly() -> None:
    events = _run(_agent("deep_research", [], provider="someone/research/research"), "q")
    final = events[-1]
    assert isinstance(final, GraphRunFailedEvent)
    assert final.error == (
        "agent strategy 'deep_research' of plugin 'someone/research/research' is not supported: "
        "relay runs the function_calling and ReAct strategies of langgenius/agent/agent"
    )


def test_bad_iteration_counts_fail_the_node() -> None:
    events = _run(_agent("function_calling", [TIME_TOOL], iterations=0), "q")
    final = events[-1]
    assert isinstance(final, GraphRunFailedEvent)
    assert final.error == "maximum_iterations must be between 1 and 99, got 0"


def test_the_offline_plan_is_derived_from_the_prompt() -> None:
    specs = (
        FunctionSpec("alpha", parameters={"type": "object", "required": ["q"],
                                          "properties": {"q": {"type": "string"}}}),
        FunctionSpec("beta"),
    )  # fmt: skip
    ask = ChatRequest("m", (ChatMessage("user", "beta first, then alpha"),), tools=specs)
    text, calls = agent_reply(ask)
    assert (text, [(c.name, c.arguments) for c in calls]) == ("", [("beta", "{}")])
    # Tools the query does not name: each offered tool once, text parameters get the query.
    plain = ChatRequest("m", (ChatMessage("user", "hello"),), tools=specs)
    assert [(c.name, c.arguments) for c in agent_reply(plain)[1]] == [("alpha", '{"q": "hello"}')]
