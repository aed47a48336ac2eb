"""Workflow-as-tool: a tool node runs another published workflow app of the same tenant.

The app is found through a :class:`PublishedApps` port (the tasks layer looks it up in the
database; tests use :class:`InMemoryPublishedApps`). Its end-node outputs become the tool's JSON
and variables, and its text output (``text``, ``answer`` or ``output``) the tool's text. Nested
calls are limited in depth so that an app calling itself cannot recurse forever.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from relay.workflow.dsl import WorkflowApp
from relay.workflow.errors import NodeStopped
from relay.workflow.events import GraphRunFailedEvent, GraphRunSucceededEvent
from relay.workflow.factory import create_engine
from relay.workflow.llm.base import FunctionSpec
from relay.workflow.nodes.base import NodeServices, RunInfo
from relay.workflow.stop import StopToken
from relay.workflow.tools.base import ToolCall, ToolError, ToolResult

MAX_DEPTH = 3
_TEXT_OUTPUTS = ("text", "answer", "output", "result")


class PublishedApps(Protocol):
    """Finds the published workflow app a workflow tool names, within one tenant."""

    def find(self, tenant_id: str, provider_id: str, tool_name: str) -> WorkflowApp | None:
        """The app, or None when the tenant has no such published workflow."""
        ...


class InMemoryPublishedApps:
    """:class:`PublishedApps` over a dict ``{(tenant_id, provider_id or tool name): app}``."""

    def __init__(self, apps: Mapping[tuple[str, str], WorkflowApp]) -> None:
        self._apps = dict(apps)

    def find(self, tenant_id: str, provider_id: str, tool_name: str) -> WorkflowApp | None:
        return self._apps.get((tenant_id, provider_id)) or self._apps.get((tenant_id, tool_name))


class WorkflowAppTools:
    """The ``workflow`` tool provider; ``services(depth)`` builds node services for a nested
    run (with a provider one level deeper), so nested apps use the same LLM, HTTP and code
    settings as the caller."""

    provider_id = "workflow"

    def __init__(
        self,
        apps: PublishedApps,
        services: Callable[[int], NodeServices],
        depth: int = 0,
    ) -> None:
        self._apps = apps
        self._services = services
        self._depth = depth

    def tool_names(self) -> Sequence[str]:
        return ()  # any published workflow of the tenant

    def describe(self, tool_name: str) -> FunctionSpec | None:
        return None  # the app's inputs are known only when it is found, per tenant

    def invoke(self, call: ToolCall, stop: StopToken) -> ToolResult:
        if self._depth >= MAX_DEPTH:
            raise ToolError(
                f"workflow tool '{call.tool_name}' is nested more than {MAX_DEPTH} levels deep"
            )
        app = self._apps.find(call.tenant_id, call.provider_id, call.tool_name)
        if app is None:
            raise ToolError(
                f"workflow tool '{call.tool_name}' (provider '{call.provider_id}') names no "
                "published workflow app of this tenant"
            )
        engine = create_engine(
            app,
            inputs=dict(call.parameters),
            services=self._services(self._depth + 1),
            run_info=RunInfo(tenant_id=call.tenant_id, app_id=call.provider_id,
                             user_id=call.user_id),
        )  # fmt: skip
        outputs: dict[str, Any] | None = None
        error: str | None = None
        for event in engine.run():
            if stop.is_set():
                engine.stop(stop.reason or "stopped")
            if isinstance(event, GraphRunSucceededEvent):
                outputs = dict(event.outputs)
            elif isinstance(event, GraphRunFailedEvent):
                error = event.error
        if stop.is_set():
            raise NodeStopped(stop.reason or "stopped")
        if outputs is None:
            raise ToolError(f"workflow tool '{call.tool_name}' failed: {error or 'no result'}")
        return ToolResult(text=_text(outputs), json=[outputs], variables=outputs)


def _text(outputs: Mapping[str, Any]) -> str:
    for key in _TEXT_OUTPUTS:
        if isinstance(outputs.get(key), str):
            return str(outputs[key])
    return json.dumps(outputs, ensure_ascii=False)
