"""The tool provider interface: a provider offers named tools; a call returns text, JSON and
files, as Dify's tool messages do."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from relay.workflow.errors import NodeError
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


class ToolSource(Protocol):
    """Finds the provider for a tool node."""

    def provider_for(self, provider_type: str, provider_id: str) -> ToolProvider | None:
        """The installed provider, or None when it is not installed."""
        ...

    def installed(self) -> list[str]:
        """Ids of installed providers (named in the error for a missing one)."""
        ...


def short_provider_id(provider_id: str) -> str:
    """``langgenius/time/time`` (plugin-era exports) and ``time`` name the same provider."""
    return provider_id.rstrip("/").rsplit("/", 1)[-1]


class ToolProviders:
    """:class:`ToolSource` over a fixed set of providers; ``workflow`` tools go to ``workflows``."""

    def __init__(
        self, providers: Iterable[ToolProvider] = (), workflows: ToolProvider | None = None
    ) -> None:
        self._by_id = {short_provider_id(p.provider_id): p for p in providers}
        self._workflows = workflows

    def provider_for(self, provider_type: str, provider_id: str) -> ToolProvider | None:
        if provider_type == "workflow":
            return self._workflows
        return self._by_id.get(short_provider_id(provider_id))

    def installed(self) -> list[str]:
        names = sorted(self._by_id)
        return names + (["workflow (workflow-as-tool)"] if self._workflows else [])

    def with_workflows(self, workflows: ToolProvider) -> ToolProviders:
        """The same providers plus workflow-as-tool."""
        return ToolProviders(self._by_id.values(), workflows)
