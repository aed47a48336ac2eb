"""The tool node: built-in current_time, workflow-as-tool, and providers relay does not have."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import Any

import pytest

from relay.workflow import LLMProviderConfig, LLMSettings, create_services, load_dsl
from relay.workflow.events import GraphEngineEvent, GraphRunFailedEvent, GraphRunSucceededEvent
from relay.workflow.nodes.base import NodeServices
from relay.workflow.stop import StopToken
from relay.workflow.tools.base import ToolCall, ToolError, ToolProviders
from relay.workflow.tools.builtin import TimeProvider
from relay.workflow.tools.workflow_apps import MAX_DEPTH, InMemoryPublishedApps, WorkflowAppTools

from .helpers import build, edge, end, make_engine, node, run_all, start


class FixedClock(datetime):
    """now() at 2026-03-01 08:30 UTC (in the zone asked for)."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> FixedClock:
        fixed = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
        moved = fixed.astimezone(tz) if tz else fixed
        return cls(*moved.timetuple()[:6], tzinfo=moved.tzinfo)


def _tool(
    node_id: str,
    provider_id: str,
    tool_name: str,
    provider_type: str = "builtin",
    **parameters: dict[str, Any],
) -> dict[str, Any]:
    return node(node_id, "tool", provider_id=provider_id, provider_type=provider_type,
                provider_name=provider_id, tool_name=tool_name, tool_label=tool_name,
                tool_configurations={}, tool_parameters=parameters)  # fmt: skip


def _outputs(events: list[GraphEngineEvent]) -> dict[str, Any]:
    last = events[-1]
    assert isinstance(last, GraphRunSucceededEvent), last
    return dict(last.outputs)


def _services(tools: ToolProviders) -> NodeServices:
    return create_services(
        llm=LLMSettings(default=LLMProviderConfig(kind="offline", token_delay=0)), tools=tools
    )


def test_current_time_with_format_and_timezone_from_the_pool() -> None:
    graph = build(
        [
            start("zone"),
            _tool("now", "langgenius/time/time", "current_time",
                  format={"type": "constant", "value": "%Y-%m-%d %H:%M"},
                  timezone={"type": "variable", "value": ["start", "zone"]}),
            end(now=["now", "text"]),
        ],
        [edge("start", "now"), edge("now", "end")],
    )  # fmt: skip
    services = _services(ToolProviders([TimeProvider(FixedClock)]))
    engine = make_engine(graph, {"zone": "Asia/Tokyo"}, services=services)
    assert _outputs(run_all(engine)) == {"now": "2026-03-01 17:30"}
    bad = run_all(make_engine(graph, {"zone": "Mars/Base"}, services=services))[-1]
    assert isinstance(bad, GraphRunFailedEvent)
    assert "unknown timezone 'Mars/Base'" in bad.error


def test_a_provider_that_is_not_installed_fails_the_node_naming_it() -> None:
    graph = build(
        [
            start("q"),
            _tool("search", "langgenius/tavily/tavily", "tavily_search",
                  query={"type": "mixed", "value": "news about {{#start.q#}}"}),
            end(r=["search", "text"]),
        ],
        [edge("start", "search"), edge("search", "end")],
    )  # fmt: skip
    last = run_all(make_engine(graph, {"q": "relay"}))[-1]
    assert isinstance(last, GraphRunFailedEvent)
    assert "tool provider 'langgenius/tavily/tavily' (builtin) is not installed" in last.error
    assert "(installed: duckduckgo, jina, searxng, time, webscraper, wikipedia)" in last.error


SUMMARY_APP = {
    "app": {"name": "summarise", "mode": "workflow"},
    "kind": "app",
    "version": "0.1.5",
    "workflow": {
        "graph": {
            "nodes": [
                {"id": "s", "data": {"type": "start", "title": "Start", "variables": [
                    {"variable": "topic", "type": "text-input", "required": True}]}},
                {"id": "t", "data": {"type": "template-transform", "title": "T",
                                     "template": "About {{ topic }}.", "variables": [
                                         {"variable": "topic", "value_selector": ["s", "topic"]}]}},
                {"id": "e", "data": {"type": "end", "title": "End", "outputs": [
                    {"variable": "text", "value_selector": ["t", "output"]}]}},
            ],
            "edges": [{"id": "1", "source": "s", "target": "t"},
                      {"id": "2", "source": "t", "target": "e"}],
        }
    },
}  # fmt: skip


def _workflow_tools(apps: InMemoryPublishedApps) -> NodeServices:
    def services_at(depth: int) -> NodeServices:
        return _services(
            ToolProviders([TimeProvider()], WorkflowAppTools(apps, services_at, depth))
        )

    return services_at(0)


def _caller() -> Any:
    return build(
        [
            start("subject"),
            _tool("sub", "wf-tool-1", "summarise", provider_type="workflow",
                  topic={"type": "variable", "value": ["start", "subject"]}),
            end(text=["sub", "text"], json=["sub", "json"]),
        ],
        [edge("start", "sub"), edge("sub", "end")],
    )  # fmt: skip


def test_workflow_as_tool_runs_a_published_app_of_the_same_tenant() -> None:
    apps = InMemoryPublishedApps({("t1", "wf-tool-1"): load_dsl(SUMMARY_APP)})
    engine = make_engine(_caller(), {"subject": "tides"}, services=_workflow_tools(apps))
    assert _outputs(run_all(engine)) == {"text": "About tides.", "json": [{"text": "About tides."}]}
    # The engine's run belongs to tenant t1; another tenant's app of that name is not found.
    other = InMemoryPublishedApps({("t2", "wf-tool-1"): load_dsl(SUMMARY_APP)})
    last = run_all(make_engine(_caller(), {"subject": "x"}, services=_workflow_tools(other)))[-1]
    assert isinstance(last, GraphRunFailedEvent)
    assert "names no published workflow app of this tenant" in last.error


def test_workflow_as_tool_fails_the_caller_when_the_app_fails_and_limits_depth() -> None:
    apps = InMemoryPublishedApps({("t1", "summarise"): load_dsl(SUMMARY_APP)})
    # The nested app's required input is missing: its failure is the tool's error.
    call = ToolCall("workflow", "p", "summarise", {}, tenant_id="t1")
    tools = WorkflowAppTools(apps, lambda depth: _services(ToolProviders()))
    with pytest.raises(ToolError, match="input 'topic' is required"):
        tools.invoke(call, StopToken())
    deep = WorkflowAppTools(apps, lambda depth: _services(ToolProviders()), depth=MAX_DEPTH)
    with pytest.raises(ToolError, match="nested more than"):
        deep.invoke(ToolCall("workflow", "p", "summarise", {"topic": "x"}, tenant_id="t1"),
                    StopToken())  # fmt: skip
