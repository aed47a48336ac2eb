"""tool: calls one tool of a provider with parameters from the pool; outputs ``text``, ``files``
and ``json`` (plus any variables the tool names), as Dify does.

Parameters are ``mixed`` (text with ``{{#...#}}`` references), ``variable`` (a selector) or
``constant``. A provider relay does not have fails the node with an error naming it and the
providers that are installed.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from relay.workflow.graph import NodeConfig
from relay.workflow.nodes.base import Node, NodeContext, NodeRun, NodeRunResult, parse_data
from relay.workflow.tools.base import ToolCall, invoke_tool
from relay.workflow.variables import Selector, VariablePool, as_selector, template_references


class ToolInput(BaseModel):
    """One parameter's source."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["mixed", "variable", "constant"] = "constant"
    value: Any = None


class ToolData(BaseModel):
    """tool node data."""

    model_config = ConfigDict(extra="ignore")

    provider_id: str
    provider_type: str = "builtin"
    provider_name: str = ""
    tool_name: str
    tool_label: str = ""
    tool_configurations: dict[str, Any] = Field(default_factory=dict)
    tool_parameters: dict[str, ToolInput] = Field(default_factory=dict)


class ToolNode(Node):
    """Outputs ``text``, ``files`` and ``json``."""

    node_type = "tool"

    def __init__(self, config: NodeConfig) -> None:
        super().__init__(config)
        self.data = parse_data(ToolData, config)

    def selectors(self) -> list[Selector]:
        found: list[Selector] = []
        for item in self.data.tool_parameters.values():
            if item.type == "variable" and isinstance(item.value, list) and item.value:
                found.append(as_selector(item.value))
            elif item.type == "mixed" and isinstance(item.value, str):
                found.extend(template_references(item.value))
        return found

    def declared_outputs(self) -> None:
        return None  # tools may add variables of their own

    def _parameters(self, pool: VariablePool) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, item in self.data.tool_parameters.items():
            if item.type == "variable":
                values[name] = pool.get(item.value) if isinstance(item.value, list) else None
            elif item.type == "mixed":
                values[name] = pool.render(str(item.value or ""))
            else:
                values[name] = item.value
        return values

    def run(self, ctx: NodeContext) -> NodeRun:
        data = self.data
        parameters = self._parameters(ctx.pool)
        call = ToolCall(
            provider_type=data.provider_type,
            provider_id=data.provider_id,
            tool_name=data.tool_name,
            parameters=parameters,
            configurations=dict(data.tool_configurations),
            tenant_id=ctx.run.tenant_id,
            app_id=ctx.run.app_id,
            user_id=ctx.run.user_id,
        )
        result = invoke_tool(ctx.services.tools, call, ctx.stop)
        return NodeRunResult(
            outputs={
                **dict(result.variables),
                "text": result.text,
                "files": list(result.files),
                "json": list(result.json),
            },
            inputs=parameters,
            process_data={"provider": data.provider_id, "tool": data.tool_name},
            metadata={"tool_info": {"provider_type": data.provider_type,
                                    "provider_id": data.provider_id}},
        )  # fmt: skip
        yield  # a generator, like every node
