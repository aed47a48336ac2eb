"""Tenants' tool providers over the API: credentials stored encrypted, listed masked, scoped by
tenant, and used by a workflow's tool node through ``SqlTenantTools``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy import select

from relay.config import Settings
from relay.models import ToolProviderSetting
from relay.services.tool_providers import SqlTenantTools
from relay.workflow import GraphRunSucceededEvent, RunInfo, create_engine
from relay.workflow.config import HttpRequestConfig
from relay.workflow.tools.catalog import builtin_tools, tenant_builders
from tests.integration.test_api_support import Api, TenantCredentials, admin_api
from tests.integration.workflow.servers import ApiHandler, LocalServer
from tests.unit.workflow.helpers import build, edge, end, node, offline_services, start

KEY = Fernet.generate_key().decode()
SECRET = "jina_0123456789abcdef"


@pytest.fixture
def keyed(settings: Settings) -> Iterator[Api]:
    workflow = settings.workflow.model_copy(update={"tool_credentials_key": SecretStr(KEY)})
    with admin_api(settings.model_copy(update={"workflow": workflow})) as driver:
        yield driver


def _put(api: Api, tenant: TenantCredentials, path: str, body: dict[str, Any]) -> Any:
    return api.call("PUT", f"/v1/tool-providers/{path}", tenant, json=body)


def test_credentials_are_encrypted_masked_and_scoped(keyed: Api) -> None:
    tenant, other = keyed.create_tenant("a"), keyed.create_tenant("b")
    put = _put(keyed, tenant, "builtin/langgenius/jina/jina", {"credentials": {"api_key": SECRET}})
    assert put.status_code == 200, put.json
    assert put.json["provider_id"] == "jina"
    assert put.json["credentials"] == {"api_key": "ji******ef"}
    with keyed.runtime.db.session() as session:
        row = session.scalars(select(ToolProviderSetting)).one()
        assert SECRET not in row.credentials
        assert row.tenant_id == tenant.id
    listed = keyed.call("GET", "/v1/tool-providers", tenant).json["data"]
    assert [(p["provider_type"], p["provider_id"], p["credentials"]) for p in listed] == [
        ("builtin", "jina", {"api_key": "ji******ef"})
    ]
    assert keyed.call("GET", "/v1/tool-providers", other).json["data"] == []
    stored = SqlTenantTools(keyed.runtime.db, SecretStr(KEY))
    found = stored.get(tenant.id, "plugin", "langgenius/jina/jina")
    assert found is not None
    assert found.credentials == {"api_key": SECRET}
    assert stored.get(other.id, "builtin", "jina") is None
    # Another tenant cannot delete it; its owner can, once.
    assert keyed.call("DELETE", "/v1/tool-providers/builtin/jina", other).status_code == 404
    assert keyed.call("DELETE", "/v1/tool-providers/builtin/jina", tenant).status_code == 204
    assert keyed.call("DELETE", "/v1/tool-providers/builtin/jina", tenant).status_code == 404


@pytest.mark.parametrize(("path", "body", "message"), [
    ("builtin/tavily", {}, "'tavily' is not a built-in tool provider of relay"),
    ("plugin/x", {}, "provider type 'plugin' cannot be set up"),
    ("api/shop", {"config": {"schema": "openapi: [3"}}, "not valid JSON or YAML"),
    ("api/shop", {"config": {"schema": {"paths": {}}}}, "needs an http(s) URL in servers[0].url"),
    ("mcp/calc", {"config": {}}, "an mcp provider needs config.server_url"),
    ("mcp/calc", {"config": {"server_url": "http://x"}, "extra": 1}, "extra"),
])  # fmt: skip
def test_bad_providers_are_refused_and_store_nothing(
    keyed: Api, path: str, body: dict[str, Any], message: str
) -> None:
    tenant = keyed.create_tenant()
    refused = _put(keyed, tenant, path, body)
    assert refused.status_code == 400
    assert message in str(refused.json)
    assert keyed.rows(ToolProviderSetting) == []


def test_without_a_key_credentials_are_refused(api: Api, tenant: TenantCredentials) -> None:
    refused = _put(api, tenant, "builtin/jina", {"credentials": {"api_key": SECRET}})
    assert refused.status_code == 503
    assert refused.json["code"] == "tool_credentials_key_missing"
    assert "RELAY_WORKFLOW_TOOL_CREDENTIALS_KEY" in refused.json["message"]
    assert api.rows(ToolProviderSetting) == []
    # A provider without secrets needs no key.
    mcp = _put(api, tenant, "mcp/calc", {"config": {"server_url": "https://mcp.example/mcp"}})
    assert mcp.status_code == 200, mcp.json


def test_a_tool_node_runs_an_api_tool_the_tenant_stored(keyed: Api) -> None:
    tenant = keyed.create_tenant()
    with LocalServer(ApiHandler) as server:
        schema = {
            "openapi": "3.0.0", "servers": [{"url": server.url}],
            "paths": {"/echo": {"get": {"operationId": "echo", "parameters": [
                {"name": "q", "in": "query", "required": True, "schema": {"type": "string"}}]}}},
        }  # fmt: skip
        body = {"config": {"schema": schema}, "credentials": {"header:X-Token": "t0ken"}}
        stored = _put(keyed, tenant, "api/echo-api", body)
        assert stored.status_code == 200, stored.json
        assert stored.json["tools"] == ["echo"]
        http = HttpRequestConfig(allow_private_addresses=True)
        tools = builtin_tools(http=http).with_tenant(
            SqlTenantTools(keyed.runtime.db, SecretStr(KEY)), tenant_builders(http)
        )
        graph = build(
            [start(), node("call", "tool", provider_id="echo-api", provider_type="api",
                           tool_name="echo", tool_parameters={"q": {"type": "constant",
                                                                    "value": "hi"}}),
             end(out=["call", "json"])],
            [edge("start", "call"), edge("call", "end")],
        )  # fmt: skip
        engine = create_engine(graph, services=offline_services(tools=tools),
                               run_info=RunInfo(tenant_id=tenant.id))  # fmt: skip
        final = list(engine.run())[-1]
    assert isinstance(final, GraphRunSucceededEvent), final
    echoed = final.outputs["out"][0]
    assert echoed["query"] == {"q": ["hi"]}
    assert echoed["headers"]["x-token"] == "t0ken"
