"""The graph model: nodes, edges with source handles, levels (top level and iteration bodies).

A :class:`Graph` is one level: the top-level workflow or the body of one iteration node,
which is itself a graph whose root is the iteration's start node. Construction checks the
structure (dangling and cross-level edges, a single start node, cycles) and
:func:`validate_graph` checks node types and variable references against a node catalogue.
Everything here is pure data and computation; it does no I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

from relay.workflow.errors import GraphValidationError, UnsupportedNodeTypeError
from relay.workflow.variables import (
    CONVERSATION_NODE_ID,
    ENVIRONMENT_NODE_ID,
    SYSTEM_NODE_ID,
    Selector,
)

START_TYPE = "start"
ITERATION_TYPE = "iteration"
ITERATION_START_TYPE = "iteration-start"
LOOP_TYPE = "loop"
LOOP_START_TYPE = "loop-start"
# Node types whose body is a level of its own (nodes with ``parentId`` set to them).
CONTAINER_TYPES = frozenset({ITERATION_TYPE, LOOP_TYPE})
_BODY_START_TYPES = frozenset({ITERATION_START_TYPE, LOOP_START_TYPE})
SOURCE_HANDLE = "source"
FAIL_BRANCH_HANDLE = "fail-branch"


class Problems(list[str]):
    """Problem messages, each also kept as ``{"node_id", "field", "message"}`` (``structured``)."""

    def __init__(self) -> None:
        super().__init__()
        self.structured: list[dict[str, Any]] = []

    def add(self, message: str, node_id: str | None = None, field: str | None = None) -> None:
        """Record one problem, naming the node and the field of its data when there is one."""
        self.append(message)
        self.structured.append({"node_id": node_id, "field": field, "message": message})

    def error(self) -> GraphValidationError:
        """All problems as one :class:`GraphValidationError`."""
        return GraphValidationError(
            "invalid workflow graph: " + "; ".join(self),
            details=list(self),
            problems=list(self.structured),
        )


@dataclass(frozen=True)
class NodeConfig:
    """A node as exported by Dify: id, type, title and the type-specific ``data``."""

    id: str
    type: str
    title: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)
    parent_id: str | None = None

    def describe(self) -> str:
        """How errors name the node: its id and, when it has one, its title."""
        return f"node '{self.id}'" + (f' ("{self.title}")' if self.title else "")


@dataclass(frozen=True)
class Edge:
    """A directed edge; ``source_handle`` picks the branch of if-else and fail-branch nodes."""

    id: str
    source: str
    target: str
    source_handle: str = SOURCE_HANDLE


class Graph:
    """One level of a workflow graph; ``children`` holds the body of each iteration node."""

    def __init__(
        self,
        nodes: Mapping[str, NodeConfig],
        edges: Sequence[Edge],
        root_id: str,
        *,
        children: Mapping[str, Graph] | None = None,
        container_id: str | None = None,
        pruned: Sequence[str] = (),
    ) -> None:
        self.nodes = dict(nodes)
        self.edges = list(edges)
        self.root_id = root_id
        self.children = dict(children or {})
        self.container_id = container_id
        self.pruned = list(pruned)
        self._in: dict[str, list[Edge]] = {node_id: [] for node_id in self.nodes}
        self._out: dict[str, list[Edge]] = {node_id: [] for node_id in self.nodes}
        for edge in self.edges:
            self._out[edge.source].append(edge)
            self._in[edge.target].append(edge)

    # --- construction ----------------------------------------------------------------------

    @classmethod
    def build(cls, nodes: Iterable[NodeConfig], edges: Iterable[Edge]) -> Graph:
        """Split nodes into levels, check the structure and return the top level.

        Raises :class:`GraphValidationError` listing every structural problem found. Nodes
        that cannot be reached from their level's root never run and are dropped
        (``graph.pruned`` names them), as Dify ignores unconnected canvas nodes.
        """
        problems = Problems()
        by_id: dict[str, NodeConfig] = {}
        for node in nodes:
            if node.id in by_id:
                problems.add(f"duplicate node id '{node.id}'", node.id, "id")
            by_id[node.id] = node
        levels: dict[str | None, dict[str, NodeConfig]] = {None: {}}
        for node in by_id.values():
            parent = node.parent_id
            if parent is not None and (
                parent not in by_id or by_id[parent].type not in CONTAINER_TYPES
            ):
                problems.add(
                    f"{node.describe()} sits in '{parent}', which is not an iteration or a loop",
                    node.id,
                    "parentId",
                )
                parent = None
            levels.setdefault(parent, {})[node.id] = node
        for node in by_id.values():
            if node.type in CONTAINER_TYPES:
                levels.setdefault(node.id, {})
        level_edges: dict[str | None, list[Edge]] = {key: [] for key in levels}
        seen_edges: set[str] = set()
        for edge in edges:
            missing = [end for end in (edge.source, edge.target) if end not in by_id]
            if missing:
                problems.add(
                    f"edge '{edge.id}' is dangling: node(s) {', '.join(map(repr, missing))} "
                    "do not exist",
                    edge.source if edge.source in by_id else None,
                    "edges",
                )
                continue
            source_level = _level_of(by_id, edge.source)
            if source_level != _level_of(by_id, edge.target):
                problems.add(
                    f"edge '{edge.id}' crosses from {by_id[edge.source].describe()} into "
                    f"{by_id[edge.target].describe()}, which is in another iteration level",
                    edge.source,
                    "edges",
                )
                continue
            if edge.id in seen_edges:
                edge = Edge(
                    f"{edge.id}#{len(seen_edges)}", edge.source, edge.target, edge.source_handle
                )
            seen_edges.add(edge.id)
            level_edges[source_level].append(edge)

        graphs: dict[str | None, Graph] = {}
        for container in sorted(levels, key=lambda key: "" if key is None else key):
            root = _find_root(container, levels[container], by_id, problems)
            if root is None:
                continue
            level_nodes = levels[container]
            cycle = _cycle_members(level_nodes, level_edges[container])
            if cycle:
                names = ", ".join(by_id[node_id].describe() for node_id in cycle)
                where = "the workflow" if container is None else f"iteration '{container}'"
                problems.add(f"cycle in {where} through {names}", cycle[0], "edges")
                continue
            reachable = _reachable(root, level_edges[container])
            pruned = [node_id for node_id in level_nodes if node_id not in reachable]
            kept = {
                node_id: level_nodes[node_id] for node_id in level_nodes if node_id in reachable
            }
            kept_edges = [e for e in level_edges[container] if e.source in reachable]
            graphs[container] = cls(kept, kept_edges, root, container_id=container, pruned=pruned)
        if problems:
            raise problems.error()
        for graph in graphs.values():
            graph.children = {
                node_id: graphs[node_id]
                for node_id, node in graph.nodes.items()
                if node.type in CONTAINER_TYPES and node_id in graphs
            }
        return graphs[None]

    # --- traversal -------------------------------------------------------------------------

    def in_edges(self, node_id: str) -> list[Edge]:
        """Edges into ``node_id``."""
        return self._in[node_id]

    def out_edges(self, node_id: str) -> list[Edge]:
        """Edges out of ``node_id``."""
        return self._out[node_id]

    @cached_property
    def topological_order(self) -> list[str]:
        """Node ids so that every edge points forward (the graph is acyclic by construction)."""
        indegree = {node_id: len(edges) for node_id, edges in self._in.items()}
        order: list[str] = []
        frontier = [node_id for node_id in self.nodes if indegree[node_id] == 0]
        while frontier:
            node_id = frontier.pop()
            order.append(node_id)
            for edge in self._out[node_id]:
                indegree[edge.target] -= 1
                if indegree[edge.target] == 0:
                    frontier.append(edge.target)
        return order

    @cached_property
    def _ancestor_bits(self) -> tuple[dict[str, int], dict[str, int]]:
        # Ancestor sets as int bitsets: O(n) ORs instead of O(n^2) set copies on long chains.
        index = {node_id: i for i, node_id in enumerate(self.topological_order)}
        bits: dict[str, int] = {}
        for node_id in self.topological_order:
            value = 0
            for edge in self._in[node_id]:
                value |= bits[edge.source] | (1 << index[edge.source])
            bits[node_id] = value
        return index, bits

    def is_ancestor(self, candidate: str, node_id: str) -> bool:
        """Whether every run of ``node_id`` comes after ``candidate`` could have run."""
        index, bits = self._ancestor_bits
        if candidate not in index or node_id not in bits:
            return False
        return bool((bits[node_id] >> index[candidate]) & 1)

    def ancestors(self, node_id: str) -> set[str]:
        """All nodes from which ``node_id`` can be reached."""
        index, bits = self._ancestor_bits
        value = bits[node_id]
        return {other for other, i in index.items() if (value >> i) & 1}

    def walk(self) -> Iterator[tuple[Graph, NodeConfig]]:
        """Every node of this level and of the iteration bodies below it, with its level."""
        for node in self.nodes.values():
            yield self, node
            child = self.children.get(node.id)
            if child is not None:
                yield from child.walk()

    def find(self, node_id: str) -> NodeConfig | None:
        """A node of this level or of any iteration body below it."""
        for _, node in self.walk():
            if node.id == node_id:
                return node
        return None

    @cached_property
    def fingerprint(self) -> str:
        """A hash of nodes and edges on every level, to match checkpoints to their graph."""
        payload = [
            sorted(
                [(node.id, node.type, node.parent_id, dict(node.data)) for _, node in self.walk()],
                key=lambda item: item[0],
            ),
            sorted((edge.source, edge.target, edge.source_handle) for edge in self._all_edges()),
        ]
        encoded = json.dumps(payload, sort_keys=True, default=str, ensure_ascii=False)
        return hashlib.sha256(encoded.encode()).hexdigest()

    def _all_edges(self) -> Iterator[Edge]:
        yield from self.edges
        for child in self.children.values():
            yield from child._all_edges()


def _level_of(by_id: Mapping[str, NodeConfig], node_id: str) -> str | None:
    # The iteration a node sits in (None for the top level).
    return by_id[node_id].parent_id


def _find_root(
    container: str | None,
    level: Mapping[str, NodeConfig],
    by_id: Mapping[str, NodeConfig],
    problems: Problems,
) -> str | None:
    if container is None:
        starts = [node_id for node_id, node in level.items() if node.type == START_TYPE]
        if len(starts) != 1:
            problems.add(
                f"the workflow needs exactly one start node, found {len(starts)}",
                starts[1] if len(starts) > 1 else None,
                "type",
            )
            return None
        return starts[0]
    iteration = by_id[container]
    root = iteration.data.get("start_node_id")
    if not root:
        flagged = [
            node_id
            for node_id, node in level.items()
            if node.type in _BODY_START_TYPES
            or node.data.get("isIterationStart")
            or node.data.get("isLoopStart")
        ]
        root = flagged[0] if flagged else None
    if not root or root not in level:
        problems.add(
            f"{iteration.describe()} has no start node inside it", iteration.id, "start_node_id"
        )
        return None
    return str(root)


def _cycle_members(nodes: Mapping[str, NodeConfig], edges: Sequence[Edge]) -> list[str]:
    indegree = dict.fromkeys(nodes, 0)
    out: dict[str, list[str]] = {node_id: [] for node_id in nodes}
    for edge in edges:
        indegree[edge.target] += 1
        out[edge.source].append(edge.target)
    frontier = [node_id for node_id, degree in indegree.items() if degree == 0]
    while frontier:
        node_id = frontier.pop()
        for target in out[node_id]:
            indegree[target] -= 1
            if indegree[target] == 0:
                frontier.append(target)
    return sorted(node_id for node_id, degree in indegree.items() if degree > 0)


def _reachable(root: str, edges: Sequence[Edge]) -> set[str]:
    out: dict[str, list[str]] = {}
    for edge in edges:
        out.setdefault(edge.source, []).append(edge.target)
    seen = {root}
    stack = [root]
    while stack:
        for target in out.get(stack.pop(), ()):
            if target not in seen:
                seen.add(target)
                stack.append(target)
    return seen


# --- validation against a node catalogue ------------------------------------------------------


class NodeCatalog(Protocol):
    """What validation needs to know about node types (the node registry provides it)."""

    def supported_types(self) -> Sequence[str]:
        """Node types that can run."""
        ...

    def selectors(self, config: NodeConfig) -> list[Selector]:
        """Variables the node reads; raises GraphValidationError when its data is invalid."""
        ...

    def outputs(self, config: NodeConfig) -> frozenset[str] | None:
        """Output names the node writes; None when only its run knows them."""
        ...


def validate_graph(
    graph: Graph,
    catalog: NodeCatalog,
    *,
    environment_names: Iterable[str] | None = None,
    conversation_names: Iterable[str] | None = None,
    vision_supported: bool = True,
) -> None:
    """Check node types and that every variable a node reads can exist when it runs.

    A reference is valid when it names a system, environment or conversation variable, an
    upstream node of the same level, the enclosing iteration (``item``/``index``) or a node
    upstream of that iteration. Raises :class:`UnsupportedNodeTypeError` naming each node of
    an unsupported type, or :class:`GraphValidationError` listing every other problem.
    """
    supported = set(catalog.supported_types())
    unsupported = [node for _, node in graph.walk() if node.type not in supported]
    if unsupported:
        problems = [
            f"{node.describe()} has type '{node.type}', which relay does not support"
            for node in unsupported
        ]
        raise UnsupportedNodeTypeError(
            "; ".join(problems) + f" (supported: {', '.join(sorted(supported))})",
            details=[{"node_id": n.id, "node_type": n.type, "title": n.title} for n in unsupported],
            problems=[
                {"node_id": n.id, "field": "type", "message": message}
                for n, message in zip(unsupported, problems, strict=True)
            ],
        )
    env = set(environment_names) if environment_names is not None else None
    conversation = set(conversation_names) if conversation_names is not None else None
    parents = _level_parents(graph)
    found = Problems()
    outputs: dict[str, frozenset[str] | None] = {}
    for _, node in graph.walk():
        try:
            outputs[node.id] = catalog.outputs(node)
        except GraphValidationError:
            outputs[node.id] = None  # reported below, with the node's selectors
    for level, node in graph.walk():
        vision = node.data.get("vision")
        if not vision_supported and isinstance(vision, Mapping) and vision.get("enabled"):
            found.add(
                f"{node.describe()} enables vision, but the configured LLM provider does not "
                "accept images",
                node.id,
                "vision.enabled",
            )
        try:
            selectors = catalog.selectors(node)
        except GraphValidationError as exc:
            found.append(exc.message)
            found.structured.extend(
                {**item, "node_id": item.get("node_id") or node.id} for item in exc.problems
            )
            continue
        for selector in selectors:
            problem = _check_reference(level, node, selector, parents, env, conversation)
            names = outputs.get(selector[0]) if len(selector) >= 2 else None
            if problem is None and names is not None and not _produces(names, selector):
                problem = (
                    f"{node.describe()} reads '{'.'.join(selector)}', but node '{selector[0]}' "
                    f"has no output '{selector[1]}' (it has: {', '.join(sorted(names)) or 'none'})"
                )
            if problem:
                found.add(problem, node.id, _field_of(node.data, selector))
        body = level.children.get(node.id)
        output = node.data.get("output_selector") if node.type == ITERATION_TYPE else None
        if body is not None and output and output[0] not in body.nodes:
            found.add(
                f"{node.describe()} collects '{'.'.join(output)}', "
                "which is not inside the iteration",
                node.id,
                "output_selector",
            )
    if found:
        raise found.error()


def _produces(names: frozenset[str], selector: Selector) -> bool:
    """Whether a node with outputs ``names`` writes what ``selector`` reads."""
    dotted = len(selector) >= 3 and f"{selector[1]}.{selector[2]}" in names
    return selector[1] in names or dotted


def _field_of(data: Any, selector: Selector, path: str = "") -> str | None:
    """The path in a node's data where ``selector`` is written (a list or a ``{{#a.b#}}``)."""
    if isinstance(data, Mapping):
        for key, value in data.items():
            found = _field_of(value, selector, f"{path}.{key}" if path else str(key))
            if found:
                return found
    elif isinstance(data, list):
        if [str(part) for part in data] == list(selector):
            return path or None
        for index, value in enumerate(data):
            found = _field_of(value, selector, f"{path}[{index}]")
            if found:
                return found
    elif isinstance(data, str) and "{{#" + ".".join(selector) + "#}}" in data:
        return path or None
    return None


def _level_parents(graph: Graph) -> dict[str, tuple[Graph, str]]:
    """For each iteration body (by container id): the level holding the iteration node."""
    parents: dict[str, tuple[Graph, str]] = {}
    for level, node in graph.walk():
        if node.id in level.children:
            parents[node.id] = (level, node.id)
    return parents


def _check_reference(
    level: Graph,
    node: NodeConfig,
    selector: Selector,
    parents: Mapping[str, tuple[Graph, str]],
    env: set[str] | None,
    conversation: set[str] | None,
) -> str | None:
    shown = ".".join(selector)
    if len(selector) < 2:
        return f"{node.describe()} reads '{shown}', which is not a [node, variable] selector"
    owner = selector[0]
    if owner == SYSTEM_NODE_ID:
        return None
    if owner == ENVIRONMENT_NODE_ID:
        if env is not None and selector[1] not in env:
            return f"{node.describe()} reads environment variable '{selector[1]}', not declared"
        return None
    if owner == CONVERSATION_NODE_ID:
        if conversation is not None and selector[1] not in conversation:
            return f"{node.describe()} reads conversation variable '{selector[1]}', not declared"
        return None
    current, current_id = level, node.id
    while True:
        if current.is_ancestor(owner, current_id) or owner == current.container_id:
            return None
        if current.container_id is None or current.container_id not in parents:
            break
        current, current_id = parents[current.container_id]
    exists = owner in level.nodes or any(owner == n.id for _, n in _root_of(level, parents).walk())
    why = "does not run before it" if exists else "does not exist"
    return f"{node.describe()} reads '{shown}', but node '{owner}' {why}"


def _root_of(level: Graph, parents: Mapping[str, tuple[Graph, str]]) -> Graph:
    while level.container_id is not None and level.container_id in parents:
        level = parents[level.container_id][0]
    return level
