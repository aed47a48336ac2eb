"""The tool provider interface: a provider offers named tools; a call returns text, JSON and
files, as Dify's tool messages do."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from relay.workflow.errors import NodeError
from relay.workflow.llm.base import FunctionSpec
from relay.workflow.stop import StopToken


class ToolError(NodeError):
    """A tool refused or failed the call (bad parameters, provider missing, remote error)."""

    code = "tool_error"


@dataclass(frozen=True)
class ToolCall:
    """One call of one tool, scoped to the run's tenant."""

    provider_type: str
    provider_id: str
    tool_name: str
    parameters: Mapping[str, Any]
    configurations: Mapping[str, Any] = field(default_factory=dict)
    tenant_id: str = ""
    app_id: str = ""
    user_id: str = ""
    # The tenant's credentials for the provider (decrypted for this call only; never logged).
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class ToolResult:
    """What a tool returned: text, JSON objects, files, and named variables."""

    text: str = ""
    json: Sequence[Any] = ()
    files: Sequence[Mapping[str, Any]] = ()
    variables: Mapping[str, Any] = field(default_factory=dict)


class ToolProvider(Protocol):
    """A set of tools under one provider id."""

    @property
    def provider_id(self) -> str:
        """The id exports name the provider by (``time``, ``wikipedia``)."""
        ...

    def tool_names(self) -> Sequence[str]:
        """Tools the provider offers."""
        ...

    def invoke(self, call: ToolCall, stop: StopToken) -> ToolResult:
        """Run ``call.tool_name``; raise ToolError on failure, NodeStopped when stopped."""
        ...

    def describe(self, tool_name: str) -> FunctionSpec | None:
        """What an agent's model is told about the tool (None when the provider cannot say)."""
        ...


def text_parameters(
    description: str, name: str, *fields: tuple[str, str, bool], **types: str
) -> FunctionSpec:
    """A spec whose parameters are ``(name, description, required)`` (strings unless ``types``
    names another JSON type)."""
    return FunctionSpec(
        name=name,
        description=description,
        parameters={
            "type": "object",
            "properties": {
                field_name: {"type": types.get(field_name, "string"), "description": text}
                for field_name, text, _ in fields
            },
            "required": [field_name for field_name, _, required in fields if required],
        },
    )


# Provider ids of relay's built-in tools (``tools.catalog.builtin_tools`` installs exactly these).
BUILTIN_PROVIDER_IDS = ("time", "webscraper", "wikipedia", "duckduckgo", "searxng", "jina")
# Provider types a tenant configures (an OpenAPI schema, an MCP server), stored per tenant.
TENANT_PROVIDER_TYPES = ("api", "mcp")
PROVIDER_TYPES = ("builtin", "api", "workflow", "mcp", "plugin")


@dataclass(frozen=True)
class TenantToolProvider:
    """A provider a tenant set up: its settings (``schema`` of an API provider, ``server_url``
    of an MCP server) and its credentials, decrypted."""

    provider_type: str
    provider_id: str
    config: Mapping[str, Any] = field(default_factory=dict)
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False)


class TenantTools(Protocol):
    """The providers and credentials tenants stored (``services.tool_providers`` in SQL)."""

    def get(
        self, tenant_id: str, provider_type: str, provider_id: str
    ) -> TenantToolProvider | None:
        """The tenant's entry for the provider, or None."""
        ...


class InMemoryTenantTools:
    """:class:`TenantTools` over a list, for tests and embedded use."""

    def __init__(self, entries: Iterable[tuple[str, TenantToolProvider]] = ()) -> None:
        self._entries = {
            (tenant, e.provider_type, short_provider_id(e.provider_id)): e for tenant, e in entries
        }

    def get(
        self, tenant_id: str, provider_type: str, provider_id: str
    ) -> TenantToolProvider | None:
        kind = "builtin" if provider_type == "plugin" else provider_type
        return self._entries.get((tenant_id, kind, short_provider_id(provider_id)))


class ToolSource(Protocol):
    """Finds the provider for a tool node."""

    def provider_for(
        self, provider_type: str, provider_id: str, tenant_id: str = ""
    ) -> ToolProvider | None:
        """The installed provider, or None when it is not installed."""
        ...

    def installed(self) -> list[str]:
        """Ids of installed providers (named in the error for a missing one)."""
        ...

    def credentials(
        self, tenant_id: str, provider_type: str, provider_id: str
    ) -> Mapping[str, str]:
        """The tenant's credentials for the provider (empty when none are stored)."""
        ...


def short_provider_id(provider_id: str) -> str:
    """``langgenius/time/time`` (plugin-era exports) and ``time`` name the same provider."""
    return provider_id.rstrip("/").rsplit("/", 1)[-1]


TenantProviderBuilder = Callable[[TenantToolProvider], ToolProvider]


class ToolProviders:
    """:class:`ToolSource` over a fixed set of providers; ``workflow`` tools go to ``workflows``;
    ``api`` and ``mcp`` providers are built per call from what the tenant stored in ``tenant``,
    by the builder registered for their type."""

    def __init__(
        self,
        providers: Iterable[ToolProvider] = (),
        workflows: ToolProvider | None = None,
        tenant: TenantTools | None = None,
        builders: Mapping[str, TenantProviderBuilder] | None = None,
    ) -> None:
        self._by_id = {short_provider_id(p.provider_id): p for p in providers}
        self._workflows = workflows
        self._tenant = tenant
        self._builders = dict(builders or {})

    def provider_for(
        self, provider_type: str, provider_id: str, tenant_id: str = ""
    ) -> ToolProvider | None:
        if provider_type == "workflow":
            return self._workflows
        if provider_type in TENANT_PROVIDER_TYPES:
            builder = self._builders.get(provider_type)
            stored = self._stored(tenant_id, provider_type, provider_id)
            return builder(stored) if builder is not None and stored is not None else None
        return self._by_id.get(short_provider_id(provider_id))

    def installed(self) -> list[str]:
        names = sorted(self._by_id)
        names += [f"{kind} providers the tenant set up" for kind in sorted(self._builders)]
        return names + (["workflow (workflow-as-tool)"] if self._workflows else [])

    def credentials(
        self, tenant_id: str, provider_type: str, provider_id: str
    ) -> Mapping[str, str]:
        stored = self._stored(tenant_id, provider_type, provider_id)
        return stored.credentials if stored is not None else {}

    def _stored(
        self, tenant_id: str, provider_type: str, provider_id: str
    ) -> TenantToolProvider | None:
        if self._tenant is None or not tenant_id:
            return None
        return self._tenant.get(tenant_id, provider_type, provider_id)

    def with_workflows(self, workflows: ToolProvider) -> ToolProviders:
        """The same providers plus workflow-as-tool."""
        return ToolProviders(self._by_id.values(), workflows, self._tenant, self._builders)

    def with_tenant(
        self, tenant: TenantTools, builders: Mapping[str, TenantProviderBuilder]
    ) -> ToolProviders:
        """The same providers plus what tenants stored (credentials, API and MCP providers)."""
        return ToolProviders(self._by_id.values(), self._workflows, tenant, builders)


def missing_provider(source: ToolSource, provider_type: str, provider_id: str, tool: str) -> str:
    """The error for a tool whose provider relay does not have."""
    installed = ", ".join(source.installed()) or "none"
    if provider_type in TENANT_PROVIDER_TYPES:
        return (
            f"tool provider '{provider_id}' ({provider_type}) is not set up for this tenant, so "
            f"tool '{tool}' cannot run (set it up with PUT /v1/tool-providers/{provider_type}/"
            f"<provider_id>; installed: {installed})"
        )
    return (
        f"tool provider '{provider_id}' ({provider_type}) is not installed in relay, so tool "
        f"'{tool}' cannot run (installed: {installed})"
    )


def invoke_tool(source: ToolSource, call: ToolCall, stop: StopToken) -> ToolResult:
    """Find the call's provider (ToolError naming it when missing), add the tenant's
    credentials, and run the tool."""
    provider = source.provider_for(call.provider_type, call.provider_id, call.tenant_id)
    if provider is None:
        raise ToolError(missing_provider(source, call.provider_type, call.provider_id,
                                         call.tool_name))  # fmt: skip
    credentials = source.credentials(call.tenant_id, call.provider_type, call.provider_id)
    return provider.invoke(replace(call, credentials=credentials), stop)
