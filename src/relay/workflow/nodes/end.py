"""end: collects the workflow's outputs (and streams the ones that stream, e.g. llm text)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from relay.workflow.graph import NodeConfig
from relay.workflow.nodes.base import (
    Node,
    NodeContext,
    NodeRun,
    NodeRunResult,
    ResponseSpec,
    Segment,
    parse_data,
)
from relay.workflow.variables import Selector, as_selector


class EndOutput(BaseModel):
    """One output: a name and the variable it takes its value from."""

    model_config = ConfigDict(extra="ignore")

    variable: str
    value_selector: list[str]


class EndData(BaseModel):
    """end node data."""

    model_config = ConfigDict(extra="ignore")

    outputs: list[EndOutput] = Field(default_factory=list)


class EndNode(Node):
    """Outputs ``{variable: value}``; the run's outputs are the end nodes' outputs."""

    node_type = "end"

    def __init__(self, config: NodeConfig) -> None:
        super().__init__(config)
        self.data = parse_data(EndData, config)

    def selectors(self) -> list[Selector]:
        return [as_selector(o.value_selector) for o in self.data.outputs]

    def response_spec(self) -> ResponseSpec:
        return ResponseSpec(
            tuple(Segment(selector=as_selector(o.value_selector)) for o in self.data.outputs),
            "end",
        )

    def declared_outputs(self) -> list[str]:
        return [o.variable for o in self.data.outputs]

    def run(self, ctx: NodeContext) -> NodeRun:
        outputs = {o.variable: ctx.pool.get(o.value_selector) for o in self.data.outputs}
        return NodeRunResult(outputs=outputs, inputs=dict(outputs))
        yield  # a generator, like every node
