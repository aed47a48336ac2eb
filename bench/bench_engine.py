"""Workflow engine: a 1,000-node chain of template nodes, and a 100-branch fan-out by pool size.

The chain is compared with rendering the same 1,000 templates in a plain loop (what the nodes
do without the engine), so the difference is the engine's per-node overhead: events, edge
bookkeeping, the variable pool and the hand-off to a worker thread. The fan-out runs 100
parallel branches of one 10 ms node each and compares pool sizes 4 and 16 with pool size 1.
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import Row, best_of
from relay.workflow import (
    EngineConfig,
    GraphEngine,
    GraphRunSucceededEvent,
    Node,
    NodeContext,
    NodeRegistry,
    NodeRunResult,
    RunInfo,
    VariablePool,
    create_services,
    default_registry,
    graph_from_dict,
    validate_graph,
)
from relay.workflow.graph import Graph
from relay.workflow.nodes.base import NodeRun
from relay.workflow.nodes.template_transform import compile_template

CHAIN = 1_000
BRANCHES = 100
BRANCH_SECONDS = 0.010


class WaitNode(Node):
    """A node that waits 10 ms without holding the GIL (an I/O-bound node)."""

    node_type = "bench-wait"

    def run(self, ctx: NodeContext) -> NodeRun:
        ctx.stop.wait(BRANCH_SECONDS)
        return NodeRunResult(outputs={"value": self.id})
        yield  # a generator, like every node


def _registry() -> NodeRegistry:
    registry = default_registry()
    registry.register(WaitNode)
    return registry


def _node(node_id: str, node_type: str, **data: Any) -> dict[str, Any]:
    return {"id": node_id, "data": {"type": node_type, "title": node_id, **data}}


def _edge(source: str, target: str) -> dict[str, Any]:
    return {"id": f"{source}-{target}", "source": source, "target": target}


def chain_graph(registry: NodeRegistry) -> Graph:
    """start -> t0 -> ... -> t999 -> end; each template reads its predecessor's output."""
    nodes = [_node("start", "start")]
    edges = []
    previous = "start"
    for i in range(CHAIN):
        selector = [previous, "output"] if i else ["sys", "user_id"]
        nodes.append(
            _node(
                f"t{i}",
                "template-transform",
                template="{{ prev | length }}-" + str(i),
                variables=[{"variable": "prev", "value_selector": selector}],
            )
        )
        edges.append(_edge(previous, f"t{i}"))
        previous = f"t{i}"
    nodes.append(
        _node("end", "end", outputs=[{"variable": "out", "value_selector": [previous, "output"]}])
    )
    edges.append(_edge(previous, "end"))
    graph = graph_from_dict({"nodes": nodes, "edges": edges})
    validate_graph(graph, registry)
    return graph


def fan_out_graph(registry: NodeRegistry) -> Graph:
    """start -> 100 parallel wait nodes -> join -> end."""
    nodes = [_node("start", "start"), _node("join", "template-transform", template="done")]
    edges = [_edge("join", "end")]
    for i in range(BRANCHES):
        nodes.append(_node(f"w{i}", "bench-wait"))
        edges += [_edge("start", f"w{i}"), _edge(f"w{i}", "join")]
    nodes.append(_node("end", "end", outputs=[]))
    graph = graph_from_dict({"nodes": nodes, "edges": edges})
    validate_graph(graph, registry)
    return graph


def _run(graph: Graph, registry: NodeRegistry, workers: int) -> float:
    started = time.perf_counter()
    engine = GraphEngine(
        graph,
        VariablePool(system={"user_id": "bench"}),
        registry=registry,
        services=create_services(),
        run_info=RunInfo(run_id="bench"),
        config=EngineConfig(max_workers=workers),
    )
    events = list(engine.run())
    assert isinstance(events[-1], GraphRunSucceededEvent), events[-1]
    return time.perf_counter() - started


def _raw_chain() -> float:
    # The templates the chain's nodes render, rendered in a loop with the same sandbox.
    templates = [compile_template("{{ prev | length }}-" + str(i)) for i in range(CHAIN)]
    started = time.perf_counter()
    previous: Any = "bench"
    for template in templates:
        previous = template.render(prev=previous)
    return time.perf_counter() - started


def run(rounds: int) -> list[Row]:
    """Measure the chain and the fan-out; return the rows for the table."""
    registry = _registry()
    chain = chain_graph(registry)
    _run(chain, registry, 4)  # warm-up: template compilation, imports
    engine_s = best_of(rounds, lambda: _run(chain, registry, 4))
    raw_s = best_of(rounds, _raw_chain)
    rows = [
        Row(
            f"template chain, {CHAIN:,} nodes (ms total)",
            engine_s * 1e3,
            raw_s * 1e3,
            "ms",
            higher_is_better=False,
            note="engine (build + run, 4 workers) vs rendering the templates in a loop; "
            "goal ≤ 1,000 ms",
        ),
        Row(
            "template chain: engine overhead per node (µs)",
            (engine_s - raw_s) / CHAIN * 1e6,
            raw_s / CHAIN * 1e6,
            "µs",
            higher_is_better=False,
            note="overhead beyond the render vs the render itself",
        ),
    ]
    fan = fan_out_graph(registry)
    pool_1 = best_of(rounds, lambda: _run(fan, registry, 1))
    rows.append(
        Row(
            f"fan-out, {BRANCHES} branches of 10 ms, pool 1 (ms)",
            pool_1 * 1e3,
            BRANCHES * BRANCH_SECONDS * 1e3,
            "ms",
            higher_is_better=False,
            note="vs the sum of the node times (sequential floor)",
        )
    )
    for workers in (4, 16):
        wall = best_of(rounds, lambda workers=workers: _run(fan, registry, workers))  # type: ignore[misc]
        rows.append(
            Row(
                f"fan-out, {BRANCHES} branches of 10 ms, pool {workers} (ms)",
                wall * 1e3,
                pool_1 * 1e3,
                "ms",
                higher_is_better=False,
                note=f"vs pool 1: ideal ratio {workers}x",
            )
        )
    return rows


if __name__ == "__main__":
    for row in run(3):
        print(f"{row.name}: {row.relay:,.1f} {row.unit} vs {row.baseline:,.1f} ({row.ratio:.2f}x)")
