"""loop-start and loop-end: where a loop's body begins, and a node that ends the loop."""

from __future__ import annotations

from relay.workflow.nodes.base import Node, NodeContext, NodeRun, NodeRunResult


class LoopStartNode(Node):
    """Marks where a loop's body begins."""

    node_type = "loop-start"

    def declared_outputs(self) -> list[str]:
        return []

    def run(self, ctx: NodeContext) -> NodeRun:
        return NodeRunResult()
        yield  # a generator, like every node


class LoopEndNode(Node):
    """Reaching it ends the loop after the current round (the loop node watches for it)."""

    node_type = "loop-end"

    def declared_outputs(self) -> list[str]:
        return []

    def run(self, ctx: NodeContext) -> NodeRun:
        return NodeRunResult()
        yield  # a generator, like every node
