"""variable-aggregator: the first of several variables that has a value (joins branches)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from relay.workflow.graph import NodeConfig
from relay.workflow.nodes.base import Node, NodeContext, NodeRun, NodeRunResult, parse_data
from relay.workflow.variables import Selector, VariablePool, as_selector


class AggregatorGroup(BaseModel):
    """A named group of candidate variables (advanced mode)."""

    model_config = ConfigDict(extra="ignore")

    group_name: str
    output_type: str = "any"
    variables: list[list[str]] = Field(default_factory=list)


class AdvancedSettings(BaseModel):
    """Groups, when enabled, replace the single variable list."""

    model_config = ConfigDict(extra="ignore")

    group_enabled: bool = False
    groups: list[AggregatorGroup] = Field(default_factory=list)


class AggregatorData(BaseModel):
    """variable-aggregator node data."""

    model_config = ConfigDict(extra="ignore")

    output_type: str = "any"
    variables: list[list[str]] = Field(default_factory=list)
    advanced_settings: AdvancedSettings | None = None


def _first(pool: VariablePool, candidates: list[list[str]]) -> Any:
    for selector in candidates:
        value = pool.get(selector)
        if value is not None:
            return value
    return None


class VariableAggregatorNode(Node):
    """Outputs ``output`` (or ``{group: {output}}`` in group mode)."""

    node_type = "variable-aggregator"

    def __init__(self, config: NodeConfig) -> None:
        super().__init__(config)
        self.data = parse_data(AggregatorData, config)

    @property
    def _groups(self) -> list[AggregatorGroup] | None:
        settings = self.data.advanced_settings
        return settings.groups if settings and settings.group_enabled else None

    def selectors(self) -> list[Selector]:
        groups = self._groups
        lists = [g.variables for g in groups] if groups is not None else [self.data.variables]
        return [as_selector(s) for candidates in lists for s in candidates]

    def declared_outputs(self) -> list[str]:
        groups = self._groups
        return ["output"] if groups is None else [g.group_name for g in groups]

    def run(self, ctx: NodeContext) -> NodeRun:
        groups = self._groups
        outputs: dict[str, Any]
        if groups is None:
            outputs = {"output": _first(ctx.pool, self.data.variables)}
        else:
            outputs = {g.group_name: {"output": _first(ctx.pool, g.variables)} for g in groups}
        return NodeRunResult(outputs=outputs)
        yield  # a generator, like every node
