"""Providers tenants set up: an MCP server (the mcp SDK's server, started here) and API tools
from an OpenAPI schema, used by tool nodes and agents."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from relay.streaming.queue_events import QueueAgentThoughtEvent, to_queue_event
from relay.workflow import GraphRunFailedEvent, GraphRunSucceededEvent, load_dsl
from relay.workflow.config import HttpRequestConfig
from relay.workflow.stop import StopToken
from relay.workflow.tools.base import (
    InMemoryTenantTools,
    TenantToolProvider,
    ToolCall,
    ToolError,
    ToolProviders,
    invoke_tool,
)
from relay.workflow.tools.catalog import builtin_tools, tenant_builders
from tests.unit.workflow.helpers import build, edge, end, make_engine, node, offline_services, start

from .mcp_server import TOKEN, MCPTestServer
from .servers import LocalServer

FIXTURE = Path(__file__).parents[2] / "fixtures" / "dify_nodes" / "agent-mcp.yml"
OPEN = HttpRequestConfig(allow_private_addresses=True)


@pytest.fixture(scope="module")
def mcp_server() -> Iterator[MCPTestServer]:
    with MCPTestServer() as server:
        yield server


def _tools(*entries: TenantToolProvider, http: HttpRequestConfig = OPEN) -> ToolProviders:
    tenant = InMemoryTenantTools([("t1", entry) for entry in entries])
    return builtin_tools(http=http).with_tenant(tenant, tenant_builders(http))


def _calc(server: MCPTestServer, token: str = TOKEN) -> TenantToolProvider:
    return TenantToolProvider("mcp", "calc", {"server_url": server.url}, {"api_key": token})


def test_a_tool_node_and_an_agent_use_the_mcp_server(mcp_server: MCPTestServer) -> None:
    app = load_dsl(FIXTURE.read_text())
    services = offline_services(tools=_tools(_calc(mcp_server)))
    engine = make_engine(app.graph, query='shout {"text": "hello relay"}', services=services)
    events = list(engine.run())
    final = events[-1]
    assert isinstance(final, GraphRunSucceededEvent), final
    assert final.outputs["answer"] == "42 / [offline agent reply] shout: HELLO RELAY!"
    thoughts = [q for e in events if isinstance(q := to_queue_event(e), QueueAgentThoughtEvent)]
    assert thoughts[0].tool == "shout"
    assert thoughts[0].observation == '{"shout": "HELLO RELAY!"}'


def test_the_agent_tells_the_model_the_servers_schema(mcp_server: MCPTestServer) -> None:
    provider = _tools(_calc(mcp_server)).provider_for("mcp", "calc", "t1")
    assert provider is not None
    assert list(provider.tool_names()) == ["add", "shout", "fail"]
    spec = provider.describe("add")
    assert spec is not None
    assert spec.description == "Add two integers."
    assert spec.parameters["required"] == ["a", "b"]


def test_mcp_failures_are_clear(mcp_server: MCPTestServer) -> None:
    stop = StopToken()
    failing = ToolCall("mcp", "calc", "fail", {"reason": "x"}, tenant_id="t1")
    with pytest.raises(ToolError, match="MCP tool 'fail' of 'calc' failed"):
        invoke_tool(_tools(_calc(mcp_server)), failing, stop)
    wrong_key = ToolCall("mcp", "calc", "add", {"a": 1, "b": 2}, tenant_id="t1")
    with pytest.raises(ToolError, match="MCP server 'calc' answered HTTP 401: bad token"):
        invoke_tool(_tools(_calc(mcp_server, "wrong")), wrong_key, stop)
    # Another tenant has not set the server up.
    other = ToolCall("mcp", "calc", "add", {"a": 1, "b": 2}, tenant_id="t2")
    with pytest.raises(ToolError, match=r"tool provider 'calc' \(mcp\) is not set up for this"):
        invoke_tool(_tools(_calc(mcp_server)), other, stop)
    # The address guard covers MCP servers too.
    guarded = _tools(_calc(mcp_server), http=HttpRequestConfig())
    with pytest.raises(ToolError, match=r"refusing to call 127\.0\.0\.1"):
        invoke_tool(guarded, wrong_key, stop)


def _schema(api: LocalServer) -> dict[str, Any]:
    return {
        "openapi": "3.0.0",
        "info": {"title": "echo", "version": "1"},
        "servers": [{"url": api.url}],
        "paths": {"/echo": {"post": {
            "operationId": "echo_message", "summary": "Echo a message",
            "parameters": [{"name": "lang", "in": "query", "required": True,
                            "schema": {"type": "string"}}],
            "requestBody": {"content": {"application/json": {"schema": {
                "type": "object", "properties": {"message": {"type": "string"}},
                "required": ["message"]}}}},
        }}},
    }  # fmt: skip


def test_an_api_tool_from_an_openapi_schema(api_server: LocalServer) -> None:
    stored = TenantToolProvider("api", "echo-api", {"schema": _schema(api_server)},
                                {"api_key": "k1", "api_key_header": "X-Api-Key"})  # fmt: skip
    graph = build(
        [start("msg"),
         node("echo", "tool", provider_id="echo-api", provider_type="api", tool_name="echo_message",
              tool_parameters={"message": {"type": "mixed", "value": "{{#start.msg#}}"},
                               "lang": {"type": "constant", "value": "fr"}}),
         end(body=["echo", "json"])],
        [edge("start", "echo"), edge("echo", "end")],
    )  # fmt: skip
    services = offline_services(tools=_tools(stored))
    final = list(make_engine(graph, {"msg": "bonjour"}, services=services).run())[-1]
    assert isinstance(final, GraphRunSucceededEvent), final
    echoed = final.outputs["body"][0]
    assert echoed["method"] == "POST"
    assert echoed["query"] == {"lang": ["fr"]}
    assert echoed["headers"]["x-api-key"] == "k1"
    assert json.loads(echoed["body"]) == {"message": "bonjour"}
    spec = _tools(stored).provider_for("api", "echo-api", "t1")
    assert spec is not None
    described = spec.describe("echo_message")
    assert described is not None
    assert described.parameters["required"] == ["lang", "message"]


def test_an_api_tool_missing_a_required_parameter_fails(api_server: LocalServer) -> None:
    stored = TenantToolProvider("api", "echo-api", {"schema": _schema(api_server)})
    graph = build(
        [start(), node("echo", "tool", provider_id="echo-api", provider_type="api",
                       tool_name="echo_message", tool_parameters={}), end(r=["echo", "text"])],
        [edge("start", "echo"), edge("echo", "end")],
    )  # fmt: skip
    final = list(make_engine(graph, services=offline_services(tools=_tools(stored))).run())[-1]
    assert isinstance(final, GraphRunFailedEvent)
    assert final.error == "echo_message: parameter 'lang' is required"
