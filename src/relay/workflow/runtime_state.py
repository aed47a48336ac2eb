"""Mutable state of one graph level's execution: node and edge states, the ready queue, counters.

Edges are taken or skipped as their source finishes; a node becomes ready when none of its
incoming edges is pending and at least one was taken, and is skipped (with all its outgoing
edges) when all of them were skipped. Only the dispatcher thread mutates this state.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from relay.workflow.graph import Graph


class NodeState(StrEnum):
    """Where a node is in its life within one run."""

    PENDING = "pending"
    READY = "ready"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    EXCEPTION = "exception"
    FAILED = "failed"
    SKIPPED = "skipped"
    STOPPED = "stopped"


class EdgeState(StrEnum):
    """Whether an edge was followed."""

    PENDING = "pending"
    TAKEN = "taken"
    SKIPPED = "skipped"


TERMINAL = frozenset(
    {
        NodeState.SUCCEEDED,
        NodeState.EXCEPTION,
        NodeState.FAILED,
        NodeState.SKIPPED,
        NodeState.STOPPED,
    }
)


class RunState:
    """Node/edge states and counters of one level; the top level's is what checkpoints hold."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.node_states: dict[str, NodeState] = dict.fromkeys(graph.nodes, NodeState.PENDING)
        self.edge_states: dict[str, EdgeState] = {e.id: EdgeState.PENDING for e in graph.edges}
        self.ready: deque[str] = deque()
        self.execution_ids: dict[str, str] = {}
        self.steps = 0
        self.exceptions_count = 0
        self.total_tokens = 0
        self.elapsed_before = 0.0
        self.end_outputs: dict[str, Any] = {}

    def start(self) -> None:
        """Make the root ready (a fresh run)."""
        self.node_states[self.graph.root_id] = NodeState.READY
        self.ready.append(self.graph.root_id)

    def execution_id(self, node_id: str) -> str:
        """The node's execution id in this run, allocated on first use.

        Response nodes stream chunks before they run, so the id must exist before dispatch.
        """
        found = self.execution_ids.get(node_id)
        if found is None:
            found = self.execution_ids[node_id] = str(uuid.uuid4())
        return found

    def predecessor(self, node_id: str) -> str | None:
        """Source of the first taken edge into ``node_id``."""
        for edge in self.graph.in_edges(node_id):
            if self.edge_states[edge.id] is EdgeState.TAKEN:
                return edge.source
        return None

    def finish(
        self, node_id: str, state: NodeState, handle: str | None
    ) -> tuple[list[str], list[str]]:
        """Record a node's end; take edges from ``handle`` (None: take none).

        Returns (nodes that became ready, nodes that were skipped), both in graph order.
        """
        self.node_states[node_id] = state
        ready: list[str] = []
        skipped: list[str] = []
        stack = [
            (edge, handle is not None and edge.source_handle == handle)
            for edge in reversed(self.graph.out_edges(node_id))
        ]
        # An explicit stack: skipping a long chain must not recurse once per node.
        while stack:
            edge, taken = stack.pop()
            self.edge_states[edge.id] = EdgeState.TAKEN if taken else EdgeState.SKIPPED
            target = edge.target
            if self.node_states[target] is not NodeState.PENDING:
                continue
            incoming = [self.edge_states[e.id] for e in self.graph.in_edges(target)]
            if EdgeState.PENDING in incoming:
                continue
            if EdgeState.TAKEN in incoming:
                self.node_states[target] = NodeState.READY
                self.ready.append(target)
                ready.append(target)
            else:
                self.node_states[target] = NodeState.SKIPPED
                skipped.append(target)
                stack.extend((e, False) for e in reversed(self.graph.out_edges(target)))
        return ready, skipped

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint fields of this state."""
        return {
            "node_states": {k: v.value for k, v in self.node_states.items()},
            "edge_states": {k: v.value for k, v in self.edge_states.items()},
            "ready": list(self.ready),
            "execution_ids": dict(self.execution_ids),
            "steps": self.steps,
            "exceptions_count": self.exceptions_count,
            "total_tokens": self.total_tokens,
            "end_outputs": dict(self.end_outputs),
        }

    @classmethod
    def restore(cls, graph: Graph, data: Mapping[str, Any], elapsed: float) -> RunState:
        """Rebuild from checkpoint fields."""
        state = cls(graph)
        state.node_states.update({k: NodeState(v) for k, v in data["node_states"].items()})
        state.edge_states.update({k: EdgeState(v) for k, v in data["edge_states"].items()})
        state.ready.extend(data["ready"])
        state.execution_ids.update(data["execution_ids"])
        state.steps = int(data["steps"])
        state.exceptions_count = int(data["exceptions_count"])
        state.total_tokens = int(data["total_tokens"])
        state.end_outputs = dict(data["end_outputs"])
        state.elapsed_before = elapsed
        return state
