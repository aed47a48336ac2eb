"""answer: the chat reply; streams its template as the values it references arrive."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

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
from relay.workflow.variables import TEMPLATE_REFERENCE, Selector, template_references


class AnswerData(BaseModel):
    """answer node data."""

    model_config = ConfigDict(extra="ignore")

    answer: str = ""


class AnswerNode(Node):
    """Renders ``answer`` into its ``answer`` output; the run's answer is what answers streamed."""

    node_type = "answer"

    def __init__(self, config: NodeConfig) -> None:
        super().__init__(config)
        self.data = parse_data(AnswerData, config)

    def selectors(self) -> list[Selector]:
        return template_references(self.data.answer)

    def response_spec(self) -> ResponseSpec:
        segments: list[Segment] = []
        position = 0
        for match in TEMPLATE_REFERENCE.finditer(self.data.answer):
            if match.start() > position:
                segments.append(Segment(text=self.data.answer[position : match.start()]))
            segments.append(Segment(selector=tuple(match.group(1).split("."))))
            position = match.end()
        if position < len(self.data.answer):
            segments.append(Segment(text=self.data.answer[position:]))
        return ResponseSpec(tuple(segments), "answer")

    def declared_outputs(self) -> list[str]:
        return ["answer"]

    def run(self, ctx: NodeContext) -> NodeRun:
        return NodeRunResult(outputs={"answer": ctx.pool.render(self.data.answer)})
        yield  # a generator, like every node
