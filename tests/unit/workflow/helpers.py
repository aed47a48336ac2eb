"""Builders for small graphs in Dify's export shape, a probe node, and event traces."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from relay.workflow import (
    EngineConfig,
    GraphEngine,
    GraphEngineEvent,
    GraphEngineLayer,
    LLMProviderConfig,
    LLMSettings,
    NodeRegistry,
    NodeServices,
    RunInfo,
    SystemVariables,
    VariablePool,
    create_services,
    default_registry,
    graph_from_dict,
)
from relay.workflow.errors import NodeError
from relay.workflow.events import (
    IterationRunNextEvent,
    NodeRunRetryEvent,
    NodeRunStreamChunkEvent,
    ParallelBranchRunFailedEvent,
    ParallelBranchRunStartedEvent,
    ParallelBranchRunSucceededEvent,
)
from relay.workflow.graph import Graph, NodeConfig
from relay.workflow.nodes.base import Node, NodeContext, NodeRun, NodeRunResult

# --- graph builders ----------------------------------------------------------------------------


def node(node_id: str, node_type: str, parent: str | None = None, **data: Any) -> dict[str, Any]:
    """A node as Dify exports it."""
    raw: dict[str, Any] = {"id": node_id, "data": {"type": node_type, "title": node_id, **data}}
    if parent:
        raw["parentId"] = parent
        raw["data"]["isInIteration"] = True
        raw["data"]["iteration_id"] = parent
    return raw


def edge(source: str, target: str, handle: str = "source") -> dict[str, Any]:
    """An edge as Dify exports it."""
    return {
        "id": f"{source}-{handle}-{target}",
        "source": source,
        "target": target,
        "sourceHandle": handle,
    }


def start(*variables: str, node_id: str = "start") -> dict[str, Any]:
    """A start node declaring text inputs."""
    return node(
        node_id, "start", variables=[{"variable": v, "type": "text-input"} for v in variables]
    )


def end(node_id: str = "end", **outputs: Sequence[str]) -> dict[str, Any]:
    """An end node: ``name=[node, var]`` outputs."""
    return node(
        node_id,
        "end",
        outputs=[{"variable": k, "value_selector": list(v)} for k, v in outputs.items()],
    )


def template(
    node_id: str, text: str, parent: str | None = None, **variables: Sequence[str]
) -> dict[str, Any]:
    """A template-transform node."""
    return node(
        node_id,
        "template-transform",
        parent,
        template=text,
        variables=[{"variable": k, "value_selector": list(v)} for k, v in variables.items()],
    )


def build(nodes: Iterable[dict[str, Any]], edges: Iterable[dict[str, Any]]) -> Graph:
    """A validated graph."""
    from relay.workflow import validate_graph

    graph = graph_from_dict({"nodes": list(nodes), "edges": list(edges)})
    validate_graph(graph, registry())
    return graph


# --- a node for exercising the engine ------------------------------------------------------------

BARRIERS: dict[str, threading.Barrier] = {}


class ProbeNode(Node):
    """Test node: optionally waits on a barrier, fails on purpose, or sleeps (stop-aware).

    data: value (template text, output ``value``), fail_times (fail the first n attempts of
    each execution), fail_when_item (fail when ``[parent, item]`` equals it), barrier (name of
    a barrier in BARRIERS), sleep (seconds).
    """

    node_type = "probe"

    def __init__(self, config: NodeConfig) -> None:
        super().__init__(config)
        self.attempts: dict[str, int] = {}
        self.lock = threading.Lock()

    def run(self, ctx: NodeContext) -> NodeRun:
        data = self.config.data
        with self.lock:
            attempt = self.attempts[ctx.execution_id] = self.attempts.get(ctx.execution_id, 0) + 1
        if data.get("barrier"):
            BARRIERS[data["barrier"]].wait(timeout=10)
        if data.get("sleep"):
            ctx.stop.wait(float(data["sleep"]))
            ctx.stop.raise_if_set()
        if attempt <= int(data.get("fail_times", 0)):
            raise NodeError(f"attempt {attempt} failed")
        parent = self.config.parent_id
        if (
            parent
            and "fail_when_item" in data
            and ctx.pool.get([parent, "item"]) == data["fail_when_item"]
        ):
            raise NodeError(f"item {data['fail_when_item']} is bad")
        value = data.get("output", ctx.pool.render(str(data.get("value", ""))))
        return NodeRunResult(outputs={"value": value})
        yield  # a generator, like every node


def probe(node_id: str, parent: str | None = None, **data: Any) -> dict[str, Any]:
    """A probe node."""
    return node(node_id, "probe", parent, **data)


def registry() -> NodeRegistry:
    """The default registry plus the probe node."""
    found = default_registry()
    found.register(ProbeNode)
    return found


def offline_services(token_delay: float = 0.0, **kwargs: Any) -> NodeServices:
    """Services with the offline LLM (no delay unless asked)."""
    return create_services(
        llm=LLMSettings(default=LLMProviderConfig(kind="offline", token_delay=token_delay)),
        **kwargs,
    )


def make_engine(
    graph: Graph,
    inputs: Mapping[str, Any] | None = None,
    *,
    services: NodeServices | None = None,
    workers: int = 4,
    layers: Sequence[GraphEngineLayer] = (),
    query: str | None = None,
    conversation: Mapping[str, Any] | None = None,
    run_id: str = "run-1",
) -> GraphEngine:
    """An engine over ``graph`` with the probe-aware registry."""
    pool = VariablePool(
        system=SystemVariables(query=query, workflow_run_id=run_id),
        user_inputs=inputs or {},
        conversation=conversation,
    )
    return GraphEngine(
        graph,
        pool,
        registry=registry(),
        services=services or offline_services(),
        run_info=RunInfo(tenant_id="t1", app_id="app-1", run_id=run_id),
        config=EngineConfig(max_workers=workers, idle_tick=0.05),
        layers=layers,
    )


# --- traces ---------------------------------------------------------------------------------------


def label(event: GraphEngineEvent) -> str:
    """A readable one-line form of an event for sequence assertions."""
    name = type(event).__name__.removesuffix("Event")
    if isinstance(
        event,
        ParallelBranchRunStartedEvent
        | ParallelBranchRunSucceededEvent
        | ParallelBranchRunFailedEvent,
    ):
        return f"{name} {event.parallel_start_node_id}"
    if isinstance(event, IterationRunNextEvent):
        return f"{name} {event.node_id} {event.index}"
    if isinstance(event, NodeRunRetryEvent):
        return f"{name} {event.node_id} {event.retry_index}"
    if isinstance(event, NodeRunStreamChunkEvent):
        return f"{name} {event.node_id} {event.chunk!r}"
    node_id = getattr(event, "node_id", None)
    return f"{name} {node_id}" if node_id else name


def trace(events: Iterable[GraphEngineEvent]) -> list[str]:
    """Labels of all events."""
    return [label(e) for e in events]


def run_all(engine: GraphEngine) -> list[GraphEngineEvent]:
    """Every event of a run."""
    return list(engine.run())


def item_trace(events: Iterable[GraphEngineEvent], index: int) -> list[str]:
    """Labels of the events of iteration item ``index``."""
    return [label(e) for e in events if getattr(e, "iteration_index", None) == index]


def top_trace(events: Iterable[GraphEngineEvent]) -> list[str]:
    """Labels of events outside iteration bodies."""
    return [
        label(e)
        for e in events
        if getattr(e, "in_iteration_id", None) is None
        and getattr(e, "iteration_index", None) is None
    ]


def chunks(events: Iterable[GraphEngineEvent]) -> Iterator[NodeRunStreamChunkEvent]:
    """The stream chunk events."""
    return (e for e in events if isinstance(e, NodeRunStreamChunkEvent))
