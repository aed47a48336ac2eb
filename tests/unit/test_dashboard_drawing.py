"""The run page's pictures: graph columns follow the edges, timeline bars the node timings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from relay.dashboard.drawing import layout, timeline


def _node(node_id: str) -> dict[str, object]:
    return {"id": node_id, "data": {"type": "llm", "title": node_id.upper()}}


def test_nodes_sit_one_column_right_of_their_sources() -> None:
    graph = {
        "nodes": [_node("start"), _node("a"), _node("b"), _node("end")],
        "edges": [
            {"source": "start", "target": "a"},
            {"source": "start", "target": "b"},
            {"source": "a", "target": "end"},
            {"source": "b", "target": "end"},
            {"source": "end", "target": "ghost"},  # a dangling edge is left out
        ],
    }
    picture = layout(graph, {"a": "succeeded"})
    x = {n.id: n.x for n in picture.nodes}
    assert x["start"] < x["a"] == x["b"] < x["end"]
    assert {n.id: n.status for n in picture.nodes}["a"] == "succeeded"
    assert len(picture.edges) == 4
    assert picture.width > x["end"]


def test_a_cycle_does_not_hang_the_layout() -> None:
    graph = {
        "nodes": [_node("a"), _node("b")],
        "edges": [{"source": "a", "target": "b"}, {"source": "b", "target": "a"}],
    }
    assert len(layout(graph, {}).nodes) == 2


@dataclass
class _Execution:
    title: str
    status: str
    created_at: datetime
    elapsed_time: float


def test_timeline_bars_are_placed_on_the_run_clock() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    bars, total = timeline(
        start,
        [
            _Execution("Start", "succeeded", start, 0.0),
            _Execution("LLM", "succeeded", start + timedelta(seconds=1), 3.0),
        ],
    )
    assert total == 4.0
    assert (bars[1].left, bars[1].width) == (25.0, 75.0)
    assert bars[0].width == 0.5  # a zero-length node stays visible
