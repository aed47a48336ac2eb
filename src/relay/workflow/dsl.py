"""Import of Dify's exported app DSL (YAML: ``kind: app``, ``app.mode``, ``workflow.graph``).

Only workflow and advanced-chat apps have a graph. Canvas notes (nodes with an empty type) are
dropped; everything else must be a node type the registry runs, or import fails with an error
naming the node.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from relay.workflow.errors import DSLError
from relay.workflow.graph import Edge, Graph, NodeConfig, validate_graph
from relay.workflow.nodes.registry import NodeRegistry, default_registry

SUPPORTED_MODES = ("workflow", "advanced-chat")


@dataclass(frozen=True)
class WorkflowApp:
    """An imported app: its graph and the variables it declares."""

    name: str
    mode: str
    graph: Graph
    description: str = ""
    dsl_version: str = ""
    environment_variables: dict[str, Any] = field(default_factory=dict)
    conversation_variables: dict[str, Any] = field(default_factory=dict)
    features: dict[str, Any] = field(default_factory=dict)
    graph_dict: dict[str, Any] = field(default_factory=dict)


def load_dsl(
    source: str | bytes | Mapping[str, Any], *, registry: NodeRegistry | None = None
) -> WorkflowApp:
    """Parse and validate a Dify app export; raises DSLError or GraphValidationError."""
    document = _parse(source)
    if document.get("kind", "app") != "app":
        raise DSLError(f"not an app export: kind is {document.get('kind')!r}")
    app = document.get("app")
    if not isinstance(app, Mapping):
        raise DSLError("the DSL has no 'app' section")
    mode = app.get("mode")
    if mode not in SUPPORTED_MODES:
        raise DSLError(
            f"app mode {mode!r} has no workflow graph; "
            f"supported modes: {', '.join(SUPPORTED_MODES)}"
        )
    workflow = document.get("workflow")
    if not isinstance(workflow, Mapping) or not isinstance(workflow.get("graph"), Mapping):
        raise DSLError("the DSL has no 'workflow.graph' section")
    environment = _declared(workflow.get("environment_variables"))
    conversation = _declared(workflow.get("conversation_variables"))
    graph = graph_from_dict(workflow["graph"])
    validate_graph(
        graph,
        registry or default_registry(),
        environment_names=environment,
        conversation_names=conversation,
    )
    return WorkflowApp(
        name=str(app.get("name") or ""),
        mode=str(mode),
        graph=graph,
        description=str(app.get("description") or ""),
        dsl_version=str(document.get("version") or ""),
        environment_variables=environment,
        conversation_variables=conversation,
        features=dict(workflow.get("features") or {}),
        graph_dict=dict(workflow["graph"]),
    )


def graph_from_dict(graph: Mapping[str, Any]) -> Graph:
    """A :class:`Graph` from Dify's ``{nodes: [...], edges: [...]}`` (structure checked)."""
    nodes: list[NodeConfig] = []
    notes: set[str] = set()
    for raw in graph.get("nodes") or []:
        data = raw.get("data") or {}
        node_type = str(data.get("type") or "")
        if not node_type or raw.get("type") == "custom-note":
            notes.add(str(raw.get("id")))  # a note on the canvas, not a node
            continue
        parent = (
            raw.get("parentId")
            or (data.get("iteration_id") if data.get("isInIteration") else None)
            or (data.get("loop_id") if data.get("isInLoop") else None)
        )
        nodes.append(
            NodeConfig(
                id=str(raw["id"]),
                type=node_type,
                title=str(data.get("title") or ""),
                data=data,
                parent_id=str(parent) if parent else None,
            )
        )
    edges = [
        Edge(
            id=str(raw.get("id") or f"{raw['source']}-{raw['target']}"),
            source=str(raw["source"]),
            target=str(raw["target"]),
            source_handle=str(raw.get("sourceHandle") or "source"),
        )
        for raw in graph.get("edges") or []
        # Edges to dropped notes are not edges of the graph.
        if str(raw.get("source")) not in notes and str(raw.get("target")) not in notes
    ]
    return Graph.build(nodes, edges)


def _parse(source: str | bytes | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(source, Mapping):
        return source
    try:
        document = yaml.safe_load(source)
    except yaml.YAMLError as exc:
        raise DSLError(f"the DSL is not valid YAML: {exc}") from exc
    if not isinstance(document, Mapping):
        raise DSLError("the DSL is not a YAML mapping")
    return document


def _declared(variables: Any) -> dict[str, Any]:
    """``[{name, value, value_type}]`` as ``{name: default value}``."""
    declared: dict[str, Any] = {}
    for variable in variables or []:
        if isinstance(variable, Mapping) and variable.get("name"):
            declared[str(variable["name"])] = variable.get("value")
    return declared
