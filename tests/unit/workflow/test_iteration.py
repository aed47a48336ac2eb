"""Iterations: sequential order, parallel items, and a failing item under each error mode."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from relay.workflow import (
    GraphRunFailedEvent,
    GraphRunSucceededEvent,
    IterationRunFailedEvent,
    IterationRunSucceededEvent,
)
from relay.workflow.events import NodeEventBase
from relay.workflow.graph import Graph

from .helpers import (
    BARRIERS,
    build,
    edge,
    end,
    item_trace,
    make_engine,
    node,
    probe,
    run_all,
    start,
    top_trace,
    trace,
)


def _graph(items: Any, **iteration: Any) -> Graph:
    work = iteration.pop("work", {})
    return build(
        [
            start(),
            probe("src", output=items),
            node(
                "it",
                "iteration",
                iterator_selector=["src", "value"],
                output_selector=["work", "value"],
                start_node_id="it-start",
                **iteration,
            ),
            node("it-start", "iteration-start", "it"),
            probe("work", "it", value="{{#it.item#}}-{{#it.index#}}", **work),
            end(result=["it", "output"]),
        ],
        [edge("src", "it"), edge("start", "src"), edge("it-start", "work"), edge("it", "end")],
    )


def test_sequential_iteration_exact_sequence() -> None:
    events = run_all(make_engine(_graph(["a", "b"])))
    assert trace(events) == [
        "GraphRunStarted",
        "NodeRunStarted start",
        "NodeRunSucceeded start",
        "NodeRunStarted src",
        "NodeRunSucceeded src",
        "NodeRunStarted it",
        "IterationRunStarted it",
        "IterationRunNext it 0",
        "NodeRunStarted it-start",
        "NodeRunSucceeded it-start",
        "NodeRunStarted work",
        "NodeRunSucceeded work",
        "IterationRunNext it 1",
        "NodeRunStarted it-start",
        "NodeRunSucceeded it-start",
        "NodeRunStarted work",
        "NodeRunSucceeded work",
        "IterationRunSucceeded it",
        "NodeRunSucceeded it",
        "NodeRunStarted end",
        "NodeRunSucceeded end",
        "GraphRunSucceeded",
    ]
    inner = [e for e in events if isinstance(e, NodeEventBase) and e.node_id == "work"]
    assert [(e.in_iteration_id, e.iteration_index) for e in inner] == [
        ("it", 0),
        ("it", 0),
        ("it", 1),
        ("it", 1),
    ]
    assert events[-1] == GraphRunSucceededEvent(outputs={"result": ["a-0", "b-1"]})


def test_empty_list_gives_empty_output() -> None:
    events = run_all(make_engine(_graph([])))
    assert "IterationRunNext it 0" not in trace(events)
    assert events[-1] == GraphRunSucceededEvent(outputs={"result": []})


def test_iterating_over_a_non_list_fails_clearly() -> None:
    events = run_all(make_engine(_graph("not a list")))
    assert events[-1] == GraphRunFailedEvent(
        error="iteration needs an array at src.value, got str", exceptions_count=0
    )


ITEM_OK = [
    "NodeRunStarted it-start",
    "NodeRunSucceeded it-start",
    "NodeRunStarted work",
    "NodeRunSucceeded work",
]
ITEM_FAILED = [
    "NodeRunStarted it-start",
    "NodeRunSucceeded it-start",
    "NodeRunStarted work",
    "NodeRunFailed work",
]


def _parallel_run(mode: str) -> list[Any]:
    # All three items meet at a barrier inside the body: they must run at the same time.
    BARRIERS[f"iteration-{mode}"] = threading.Barrier(3)
    graph = _graph(
        [1, 2, 3],
        is_parallel=True,
        parallel_nums=3,
        error_handle_mode=mode,
        work={"fail_when_item": 2, "barrier": f"iteration-{mode}"},
    )
    return run_all(make_engine(graph))


@pytest.mark.parametrize(
    ("mode", "output"),
    [("continue-on-error", ["1-0", None, "3-2"]), ("remove-abnormal-output", ["1-0", "3-2"])],
)
def test_parallel_iteration_handles_a_failing_item(mode: str, output: list[Any]) -> None:
    events = _parallel_run(mode)
    frame = top_trace(events)
    assert frame[:7] == [
        "GraphRunStarted",
        "NodeRunStarted start",
        "NodeRunSucceeded start",
        "NodeRunStarted src",
        "NodeRunSucceeded src",
        "NodeRunStarted it",
        "IterationRunStarted it",
    ]
    assert sorted(frame[7:10]) == [
        "IterationRunNext it 0",
        "IterationRunNext it 1",
        "IterationRunNext it 2",
    ]
    assert frame[10:] == [
        "IterationRunSucceeded it",
        "NodeRunSucceeded it",
        "NodeRunStarted end",
        "NodeRunSucceeded end",
        "GraphRunSucceeded",
    ]
    assert item_trace(events, 0) == ITEM_OK
    assert item_trace(events, 1) == ITEM_FAILED
    assert item_trace(events, 2) == ITEM_OK
    finished = next(e for e in events if isinstance(e, IterationRunSucceededEvent))
    assert finished.outputs == {"output": output}
    assert finished.steps == 3
    assert events[-1] == GraphRunSucceededEvent(outputs={"result": output})


def test_parallel_iteration_terminated_fails_on_the_bad_item() -> None:
    events = _parallel_run("terminated")
    frame = top_trace(events)
    assert frame[:7] == [
        "GraphRunStarted",
        "NodeRunStarted start",
        "NodeRunSucceeded start",
        "NodeRunStarted src",
        "NodeRunSucceeded src",
        "NodeRunStarted it",
        "IterationRunStarted it",
    ]
    assert sorted(frame[7:10]) == [
        "IterationRunNext it 0",
        "IterationRunNext it 1",
        "IterationRunNext it 2",
    ]
    assert frame[10:] == ["IterationRunFailed it", "NodeRunFailed it", "GraphRunFailed"]
    assert item_trace(events, 0) == ITEM_OK
    assert item_trace(events, 1) == ITEM_FAILED
    assert item_trace(events, 2) == ITEM_OK
    failed = next(e for e in events if isinstance(e, IterationRunFailedEvent))
    assert failed.error == "iteration item 1 failed: item 2 is bad"
    assert events[-1] == GraphRunFailedEvent(
        error="iteration item 1 failed: item 2 is bad", exceptions_count=0
    )


def test_sequential_terminated_stops_at_the_failing_item() -> None:
    graph = _graph([1, 2, 3], work={"fail_when_item": 2})
    events = run_all(make_engine(graph))
    assert "IterationRunNext it 2" not in trace(events)
    assert item_trace(events, 1) == ITEM_FAILED
    assert top_trace(events)[-3:] == ["IterationRunFailed it", "NodeRunFailed it", "GraphRunFailed"]


def test_parallel_items_do_not_see_each_others_values() -> None:
    graph = _graph(list(range(12)), is_parallel=True, parallel_nums=4)
    events = run_all(make_engine(graph))
    assert events[-1] == GraphRunSucceededEvent(outputs={"result": [f"{i}-{i}" for i in range(12)]})
