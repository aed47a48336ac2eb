"""iteration-start: the entry node of an iteration body; does nothing itself."""

from __future__ import annotations

from relay.workflow.nodes.base import Node, NodeContext, NodeRun, NodeRunResult


class IterationStartNode(Node):
    """Marks where an iteration's body begins."""

    node_type = "iteration-start"

    def declared_outputs(self) -> list[str]:
        return []

    def run(self, ctx: NodeContext) -> NodeRun:
        return NodeRunResult()
        yield  # a generator, like every node
