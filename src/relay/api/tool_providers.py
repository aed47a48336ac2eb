"""The calling tenant's tool providers: ``PUT/DELETE /v1/tool-providers/<type>/<id>`` and
``GET /v1/tool-providers`` (credentials masked)."""

from __future__ import annotations

from flask import Blueprint, Response

from relay.api.auth import current_runtime, tenant_id
from relay.api.body import no_content, parse_body, respond
from relay.api.openapi import TENANT, documented
from relay.services.tool_providers import (
    ToolProviderBody,
    ToolProviderList,
    ToolProviderService,
    ToolProviderView,
)

tool_providers = Blueprint("tool_providers", __name__)


@tool_providers.put("/tool-providers/<provider_type>/<path:provider_id>")
@documented(tags=("tools",), security=TENANT, json=ToolProviderBody, ok=(200, ToolProviderView),
            )  # fmt: skip
def put_tool_provider(provider_type: str, provider_id: str) -> tuple[Response, int]:
    """Set up a provider: credentials of a built-in tool (``builtin/jina``: ``api_key``), an
    OpenAPI schema (``api/<id>``) or an MCP server (``mcp/<id>``). Credentials are stored
    encrypted and shown masked."""
    body = parse_body(ToolProviderBody)
    service = ToolProviderService(current_runtime())
    return respond(service.put(tenant_id(), provider_type, provider_id, body))


@tool_providers.get("/tool-providers")
@documented(tags=("tools",), security=TENANT, ok=(200, ToolProviderList))
def list_tool_providers() -> tuple[Response, int]:
    """The providers this tenant set up, credentials masked."""
    return respond(ToolProviderService(current_runtime()).list(tenant_id()))


@tool_providers.delete("/tool-providers/<provider_type>/<path:provider_id>")
@documented(tags=("tools",), security=TENANT, ok=(204, None), errors=(404,))
def delete_tool_provider(provider_type: str, provider_id: str) -> tuple[Response, int]:
    """Forget a provider and its credentials."""
    ToolProviderService(current_runtime()).delete(tenant_id(), provider_type, provider_id)
    return no_content()
