"""Pictures the templates draw as inline SVG: a workflow graph's layout and a node timeline.

Pure functions over plain data, so they are easy to test and need no JavaScript chart library.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

NODE_WIDTH = 150
NODE_HEIGHT = 44
COLUMN_GAP = 60
ROW_GAP = 20


@dataclass(frozen=True)
class PlacedNode:
    id: str
    title: str
    type: str
    x: int
    y: int
    status: str | None


@dataclass(frozen=True)
class PlacedEdge:
    x1: int
    y1: int
    x2: int
    y2: int


@dataclass(frozen=True)
class GraphPicture:
    nodes: list[PlacedNode]
    edges: list[PlacedEdge]
    width: int
    height: int


def layout(graph: Mapping[str, Any], statuses: Mapping[str, str]) -> GraphPicture:
    """Columns by longest path from the roots (cycles are cut), rows in graph order."""
    nodes = [n for n in graph.get("nodes", []) if isinstance(n, Mapping) and "id" in n]
    ids = [str(n["id"]) for n in nodes]
    edges = [
        (str(e["source"]), str(e["target"]))
        for e in graph.get("edges", [])
        if isinstance(e, Mapping) and e.get("source") in ids and e.get("target") in ids
    ]
    column = dict.fromkeys(ids, 0)
    for _ in range(len(ids)):  # relax: at most len(ids) rounds on an acyclic graph
        changed = False
        for source, target in edges:
            if column[target] < column[source] + 1 <= len(ids):
                column[target] = column[source] + 1
                changed = True
        if not changed:
            break
    rows: dict[int, int] = {}
    placed: dict[str, PlacedNode] = {}
    for node in nodes:
        node_id = str(node["id"])
        raw = node.get("data")
        data: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        col = column[node_id]
        row = rows.get(col, 0)
        rows[col] = row + 1
        placed[node_id] = PlacedNode(
            id=node_id,
            title=str(data.get("title") or node_id),
            type=str(data.get("type") or ""),
            x=10 + col * (NODE_WIDTH + COLUMN_GAP),
            y=10 + row * (NODE_HEIGHT + ROW_GAP),
            status=statuses.get(node_id),
        )
    lines = [
        PlacedEdge(
            placed[s].x + NODE_WIDTH,
            placed[s].y + NODE_HEIGHT // 2,
            placed[t].x,
            placed[t].y + NODE_HEIGHT // 2,
        )
        for s, t in edges
    ]
    columns = max(column.values(), default=0) + 1
    height = max(rows.values(), default=1)
    return GraphPicture(
        nodes=list(placed.values()),
        edges=lines,
        width=20 + columns * NODE_WIDTH + (columns - 1) * COLUMN_GAP,
        height=20 + height * NODE_HEIGHT + (height - 1) * ROW_GAP,
    )


@dataclass(frozen=True)
class Bar:
    label: str
    status: str
    start: float  # seconds after the run started
    seconds: float
    left: float  # per cent of the timeline
    width: float


def timeline(
    started: datetime, executions: Sequence[Any], *, min_width: float = 0.5
) -> tuple[list[Bar], float]:
    """Each node execution as a bar on the run's time axis; the axis length in seconds."""
    spans = []
    for execution in executions:
        offset = max((execution.created_at - started).total_seconds(), 0.0)
        spans.append((execution, offset, max(float(execution.elapsed_time), 0.0)))
    total = max((offset + seconds for _, offset, seconds in spans), default=0.0) or 1.0
    bars = [
        Bar(
            label=str(execution.title),
            status=str(execution.status),
            start=offset,
            seconds=seconds,
            left=100 * offset / total,
            width=max(100 * seconds / total, min_width),
        )
        for execution, offset, seconds in spans
    ]
    return bars, total
