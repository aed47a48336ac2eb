"""Time slicing: pause at node boundaries, checkpoint as JSON, resume to the same result."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from relay.workflow import (
    CheckpointError,
    GraphRunPausedEvent,
    GraphRunResumedEvent,
    GraphRunSucceededEvent,
    InMemoryWorkflowRunStore,
    NodeRunStartedEvent,
    NodeRunStreamChunkEvent,
    PersistenceLayer,
    RunCheckpoint,
    RunRecordInfo,
    TimeSliceLayer,
)
from relay.workflow.events import GraphEngineEvent
from relay.workflow.graph import Graph

from .helpers import build, edge, end, make_engine, node, probe, start, template, trace


@dataclass
class EveryNBoundaries:
    """A slice controller that yields after ``n`` node boundaries (deterministic)."""

    n: int
    seen: int = 0

    def should_yield(self, elapsed: float) -> bool:
        self.seen += 1
        return self.seen % self.n == 0


def _chat_graph() -> Graph:
    # A fan-out, a join, an llm streaming into an answer with text around it.
    return build(
        [
            start("topic"),
            template("a", "A:{{ t }}", t=["start", "topic"]),
            template("b", "B:{{ t }}", t=["start", "topic"]),
            template("join", "{{ a }}|{{ b }}", a=["a", "output"], b=["b", "output"]),
            node(
                "llm",
                "llm",
                model={"provider": "openai", "name": "gpt-4o"},
                prompt_template=[{"role": "user", "text": "Tell me about {{#join.output#}}"}],
            ),
            node("answer", "answer", answer="Intro. {{#llm.text#}} (from {{#join.output#}})"),
        ],
        [
            edge("start", "a"),
            edge("start", "b"),
            edge("a", "join"),
            edge("b", "join"),
            edge("join", "llm"),
            edge("llm", "answer"),
        ],
    )


def _slices(graph: Graph, n: int) -> tuple[list[list[GraphEngineEvent]], InMemoryWorkflowRunStore]:
    store = InMemoryWorkflowRunStore()
    controller = EveryNBoundaries(n)
    info = RunRecordInfo(tenant_id="t1", app_id="app-1")
    slices: list[list[GraphEngineEvent]] = []
    checkpoint: RunCheckpoint | None = None
    for _ in range(20):
        layers = [TimeSliceLayer(controller), PersistenceLayer(store, info)]
        engine = make_engine(graph, {"topic": "tides"}, workers=2, layers=layers)
        events = list(engine.run() if checkpoint is None else engine.resume(checkpoint))
        slices.append(events)
        final = events[-1]
        if not isinstance(final, GraphRunPausedEvent):
            return slices, store
        # Through JSON, as a scheduler on another machine would get it.
        checkpoint = RunCheckpoint.model_validate_json(final.checkpoint.model_dump_json())
        assert store.load_checkpoint("run-1") == final.checkpoint
    raise AssertionError("never finished")


def test_sliced_run_finishes_with_the_same_outputs_and_stream() -> None:
    graph = _chat_graph()
    whole = list(make_engine(graph, {"topic": "tides"}, workers=2).run())
    slices, store = _slices(graph, 2)
    assert len(slices) >= 3
    for events in slices[:-1]:
        assert isinstance(events[-1], GraphRunPausedEvent)
    for events in slices[1:]:
        assert isinstance(events[0], GraphRunResumedEvent)
    assert slices[-1][-1] == whole[-1]
    assert isinstance(whole[-1], GraphRunSucceededEvent)
    everything = [e for events in slices for e in events]

    # Every node ran exactly once across slices, and the answer streamed the same text.
    def started(events: list[GraphEngineEvent]) -> list[str]:
        return sorted(e.node_id for e in events if isinstance(e, NodeRunStartedEvent))

    assert started(everything) == started(whole)

    def streamed(events: list[GraphEngineEvent]) -> str:
        return "".join(e.chunk for e in events if isinstance(e, NodeRunStreamChunkEvent))

    assert streamed(everything) == streamed(whole) == whole[-1].outputs["answer"]
    run = store.get_run("run-1")
    assert run is not None
    assert (run.status, run.total_steps, run.outputs) == ("succeeded", 6, whole[-1].outputs)
    assert store.load_checkpoint("run-1") is None
    records = store.node_executions("run-1")
    assert sorted(r.node_id for r in records) == started(whole)
    assert [r.index for r in records] == list(range(1, 7))
    assert {r.status for r in records} == {"succeeded"}


def test_checkpoint_holds_the_state_at_the_boundary() -> None:
    graph = build(
        [
            start(),
            probe("p1", value="1"),
            probe("p2", value="{{#p1.value#}}2"),
            probe("p3", value="{{#p2.value#}}3"),
            end(out=["p3", "value"]),
        ],
        [edge("start", "p1"), edge("p1", "p2"), edge("p2", "p3"), edge("p3", "end")],
    )
    engine = make_engine(graph, layers=[TimeSliceLayer(EveryNBoundaries(2))])
    events = list(engine.run())
    assert trace(events) == [
        "GraphRunStarted",
        "NodeRunStarted start",
        "NodeRunSucceeded start",
        "NodeRunStarted p1",
        "NodeRunSucceeded p1",
        "GraphRunPaused",
    ]
    paused = events[-1]
    assert isinstance(paused, GraphRunPausedEvent)
    checkpoint = paused.checkpoint
    assert checkpoint.steps == 2
    assert checkpoint.ready == ["p2"]
    assert checkpoint.node_states == {
        "start": "succeeded",
        "p1": "succeeded",
        "p2": "ready",
        "p3": "pending",
        "end": "pending",
    }
    assert checkpoint.edge_states["start-source-p1"] == "taken"
    assert checkpoint.edge_states["p1-source-p2"] == "taken"
    assert checkpoint.edge_states["p2-source-p3"] == "pending"
    assert checkpoint.variable_pool["values"]["p1"] == {"value": "1"}

    resumed = list(make_engine(graph).resume(checkpoint))
    assert trace(resumed) == [
        "GraphRunResumed",
        "NodeRunStarted p2",
        "NodeRunSucceeded p2",
        "NodeRunStarted p3",
        "NodeRunSucceeded p3",
        "NodeRunStarted end",
        "NodeRunSucceeded end",
        "GraphRunSucceeded",
    ]
    assert resumed[-1] == GraphRunSucceededEvent(outputs={"out": "123"})


def test_a_checkpoint_only_resumes_its_own_graph() -> None:
    graph = build(
        [start(), probe("p1"), probe("p2"), end()],
        [edge("start", "p1"), edge("p1", "p2"), edge("p2", "end")],
    )
    other = build([start(), probe("p1"), end()], [edge("start", "p1"), edge("p1", "end")])
    events = list(make_engine(graph, layers=[TimeSliceLayer(EveryNBoundaries(1))]).run())
    paused = events[-1]
    assert isinstance(paused, GraphRunPausedEvent)
    checkpoint = paused.checkpoint
    with pytest.raises(CheckpointError):
        make_engine(other).resume(checkpoint)


def test_pause_requested_after_the_last_node_just_finishes() -> None:
    graph = build([start(), end()], [edge("start", "end")])
    events = list(make_engine(graph, layers=[TimeSliceLayer(EveryNBoundaries(2))]).run())
    assert isinstance(events[-1], GraphRunSucceededEvent)
