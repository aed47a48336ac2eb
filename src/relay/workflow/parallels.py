"""Parallel branches: where a node fans out, each target starts a branch up to the join.

A fan-out is a node whose edges from one source handle lead to two or more targets. Branch
``t`` holds the nodes reachable from ``t`` and from no sibling target; nodes reachable from
several siblings come after the join and belong to none of them. Branches nest: a branch
inside another has it as parent. Pure computation over one graph level.
"""

from __future__ import annotations

from dataclasses import dataclass

from relay.workflow.graph import Graph

BranchKey = tuple[str, str]


@dataclass(frozen=True)
class Branch:
    """One branch of a fan-out: ``parallel_id`` names the fan-out, ``start_node_id`` the branch."""

    parallel_id: str
    start_node_id: str
    members: frozenset[str]
    parent: BranchKey | None = None

    @property
    def key(self) -> BranchKey:
        """(parallel_id, start_node_id)."""
        return (self.parallel_id, self.start_node_id)


class BranchIndex:
    """Branches of one graph level and, for each node, the branches it belongs to."""

    def __init__(self, graph: Graph) -> None:
        order = graph.topological_order
        index = {node_id: i for i, node_id in enumerate(order)}
        reach: dict[str, int] = {}
        for node_id in reversed(order):
            bits = 1 << index[node_id]
            for edge in graph.out_edges(node_id):
                bits |= reach[edge.target]
            reach[node_id] = bits
        found: list[Branch] = []
        for node_id in order:
            by_handle: dict[str, list[str]] = {}
            for edge in graph.out_edges(node_id):
                targets = by_handle.setdefault(edge.source_handle, [])
                if edge.target not in targets:
                    targets.append(edge.target)
            for handle, targets in by_handle.items():
                if len(targets) < 2:
                    continue
                # prefix/suffix ORs: each target's "reachable from a sibling" in O(k).
                prefix = [0]
                for target in targets:
                    prefix.append(prefix[-1] | reach[target])
                suffix = [0]
                for target in reversed(targets):
                    suffix.append(suffix[-1] | reach[target])
                suffix.reverse()
                parallel_id = f"{node_id}:{handle}"
                for i, target in enumerate(targets):
                    exclusive = reach[target] & ~(prefix[i] | suffix[i + 1])
                    members = frozenset(n for n in order if (exclusive >> index[n]) & 1)
                    if target in members:
                        found.append(Branch(parallel_id, target, members))
        # The parent of a branch is the smallest other branch that contains its start node.
        by_size = sorted(found, key=lambda b: len(b.members))
        self.branches: dict[BranchKey, Branch] = {}
        for branch in found:
            parent = next(
                (
                    other.key
                    for other in by_size
                    if other is not branch
                    and branch.start_node_id in other.members
                    and len(other.members) > len(branch.members)
                ),
                None,
            )
            resolved = Branch(branch.parallel_id, branch.start_node_id, branch.members, parent)
            self.branches[resolved.key] = resolved
        self.node_branches: dict[str, list[BranchKey]] = {}
        for branch in sorted(self.branches.values(), key=lambda b: len(b.members)):
            for member in branch.members:
                self.node_branches.setdefault(member, []).append(branch.key)
        self.starts: dict[str, list[BranchKey]] = {}
        for key in self.branches:
            self.starts.setdefault(key[1], []).append(key)

    def innermost(self, node_id: str) -> Branch | None:
        """The smallest branch ``node_id`` belongs to (its events carry this branch's ids)."""
        keys = self.node_branches.get(node_id)
        return self.branches[keys[0]] if keys else None
