"""Every built-in tool provider: ``time`` and the web tools (webscraper, wikipedia, duckduckgo,
searxng, jina); and the builders of the providers tenants set up (``api``, ``mcp``)."""

from __future__ import annotations

from relay.workflow.config import HttpRequestConfig, WebToolsConfig
from relay.workflow.tools.base import TenantProviderBuilder, ToolProviders
from relay.workflow.tools.builtin import TimeProvider
from relay.workflow.tools.mcp import mcp_builder
from relay.workflow.tools.openapi import openapi_builder
from relay.workflow.tools.web import web_providers


def builtin_tools(
    web: WebToolsConfig | None = None, http: HttpRequestConfig | None = None
) -> ToolProviders:
    """A source with every built-in provider (no workflow-as-tool); web tools use ``web``'s
    base URLs and ``http``'s address guard."""
    return ToolProviders([TimeProvider(), *web_providers(web, http)])


def tenant_builders(http: HttpRequestConfig | None = None) -> dict[str, TenantProviderBuilder]:
    """Builders of the ``api`` (OpenAPI) and ``mcp`` providers tenants store."""
    guard = http or HttpRequestConfig()
    return {"api": openapi_builder(guard), "mcp": mcp_builder(guard)}
