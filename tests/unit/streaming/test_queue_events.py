"""Queue events: one typed model per kind, and the one conversion from engine events."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime
from typing import get_args

import pytest

from relay.streaming import queue_events as qe
from relay.streaming.queue_events import (
    QueueEvent,
    StopBy,
    StopEvent,
    TextChunkEvent,
    parse_queue_event,
    to_queue_event,
)
from relay.workflow import events as ev
from relay.workflow.checkpoint import RunCheckpoint
from tests.unit.workflow.helpers import (
    build,
    edge,
    end,
    make_engine,
    probe,
    run_all,
    start,
    template,
)

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
NODE = {"id": "exec-1", "node_id": "llm", "node_type": "llm", "node_title": "LLM", "start_at": T0}
FINISHED = {**NODE, "finished_at": T0, "elapsed_time": 0.5, "outputs": {"text": "hi"}}
BRANCH = {"parallel_id": "p1", "parallel_start_node_id": "a"}
ITERATION = {"id": "it-1", "node_id": "it", "start_at": T0}
LOOP = {"id": "loop-1", "node_id": "loop", "start_at": T0}

ENGINE_EVENTS: list[tuple[ev.GraphEngineEvent, QueueEvent]] = [
    (ev.GraphRunStartedEvent(), QueueEvent.WORKFLOW_STARTED),
    (ev.GraphRunSucceededEvent(outputs={"a": 1}), QueueEvent.WORKFLOW_SUCCEEDED),
    (ev.GraphRunFailedEvent(error="boom", exceptions_count=1), QueueEvent.WORKFLOW_FAILED),
    (
        ev.GraphRunPartialSucceededEvent(exceptions_count=2, outputs={"a": 1}),
        QueueEvent.WORKFLOW_PARTIAL_SUCCEEDED,
    ),
    (ev.GraphRunAbortedEvent(reason="stop", outputs={}), QueueEvent.STOP),
    (ev.NodeRunStartedEvent(**NODE, predecessor_node_id="start"), QueueEvent.NODE_STARTED),
    (
        ev.NodeRunStreamChunkEvent(**NODE, selector=["llm", "text"], chunk="to"),
        QueueEvent.TEXT_CHUNK,
    ),
    (
        ev.NodeRunRetrieverResourceEvent(**NODE, resources=[{"content": "c"}], context="c"),
        QueueEvent.RETRIEVER_RESOURCES,
    ),
    (ev.NodeRunSucceededEvent(**FINISHED), QueueEvent.NODE_SUCCEEDED),
    (ev.NodeRunFailedEvent(**FINISHED, error="bad"), QueueEvent.NODE_FAILED),
    (
        ev.NodeRunExceptionEvent(**FINISHED, error="bad", strategy="default-value"),
        QueueEvent.NODE_EXCEPTION,
    ),
    (ev.NodeRunRetryEvent(**NODE, retry_index=1, error="flaky"), QueueEvent.NODE_RETRY),
    (ev.ParallelBranchRunStartedEvent(**BRANCH), QueueEvent.PARALLEL_BRANCH_STARTED),
    (ev.ParallelBranchRunSucceededEvent(**BRANCH), QueueEvent.PARALLEL_BRANCH_FINISHED),
    (ev.ParallelBranchRunFailedEvent(**BRANCH, error="x"), QueueEvent.PARALLEL_BRANCH_FINISHED),
    (ev.IterationRunStartedEvent(**ITERATION, inputs={"a": [1]}), QueueEvent.ITERATION_START),
    (ev.IterationRunNextEvent(**ITERATION, index=0), QueueEvent.ITERATION_NEXT),
    (ev.IterationRunSucceededEvent(**ITERATION, steps=2), QueueEvent.ITERATION_COMPLETED),
    (ev.IterationRunFailedEvent(**ITERATION, steps=1, error="x"), QueueEvent.ITERATION_COMPLETED),
    (ev.LoopRunStartedEvent(**LOOP, inputs={"loop_count": 3}), QueueEvent.LOOP_START),
    (ev.LoopRunNextEvent(**LOOP, index=1, pre_loop_output={"n": 1}), QueueEvent.LOOP_NEXT),
    (ev.LoopRunSucceededEvent(**LOOP, steps=2, outputs={"n": 2}), QueueEvent.LOOP_COMPLETED),
    (ev.LoopRunFailedEvent(**LOOP, steps=1, error="x"), QueueEvent.LOOP_COMPLETED),
    (
        ev.AgentLogEvent(**NODE, log_id="l1", label="ROUND 1", status="start"),
        QueueEvent.AGENT_LOG,
    ),
    (
        ev.AgentThoughtEvent(**NODE, thought_id="t1", position=1, thought="hm", tool="a;b"),
        QueueEvent.AGENT_THOUGHT,
    ),
]
# Events whose fields are renamed to the names Dify's clients know.
RENAMED_FIELDS = (ev.NodeRunStreamChunkEvent, ev.AgentLogEvent, ev.AgentThoughtEvent)


@pytest.mark.parametrize(("engine_event", "kind"), ENGINE_EVENTS)
def test_each_engine_event_converts_to_its_queue_event(
    engine_event: ev.GraphEngineEvent, kind: QueueEvent
) -> None:
    converted = to_queue_event(engine_event)
    assert converted is not None
    assert converted.event is kind
    # Every field the engine reports reaches the client (renamed for chunks only).
    if not isinstance(engine_event, RENAMED_FIELDS):
        carried = engine_event.model_dump()
        assert {k: v for k, v in converted.model_dump().items() if k in carried} == carried
    # And survives the trip through the stream as JSON.
    assert parse_queue_event(converted.model_dump_json()) == converted


def test_every_engine_event_type_is_either_converted_or_deliberately_hidden() -> None:
    engine_types = {
        cls
        for _, cls in inspect.getmembers(ev, inspect.isclass)
        if issubclass(cls, ev.GraphEngineEvent) and not cls.__name__.startswith("_")
    }
    engine_types -= {ev.GraphEngineEvent, ev.NodeEventBase}
    covered = {type(event) for event, _ in ENGINE_EVENTS}
    hidden = {ev.GraphRunResumedEvent, ev.GraphRunPausedEvent}
    assert engine_types == covered | hidden


def test_slice_boundaries_are_not_shown_to_clients() -> None:
    checkpoint = RunCheckpoint(
        run_id="r", graph_fingerprint="f", created_at=T0, variable_pool={}, node_states={},
        edge_states={}, ready=[], execution_ids={}, steps=1, exceptions_count=0,
        total_tokens=0, elapsed=1.0, end_outputs={}, response={},
    )  # fmt: skip
    assert to_queue_event(ev.GraphRunPausedEvent(reason="slice", checkpoint=checkpoint)) is None
    assert to_queue_event(ev.GraphRunResumedEvent(steps=3)) is None


def test_every_queue_event_kind_has_exactly_one_model() -> None:
    models = qe.QUEUE_EVENT_MODELS
    kinds = [get_args(model.model_fields["event"].annotation)[0] for model in models]
    assert sorted(kinds) == sorted(QueueEvent)


def test_chunks_keep_their_text_and_selector() -> None:
    chunk = ev.NodeRunStreamChunkEvent(
        **NODE, selector=["llm", "text"], chunk="tok ", is_final=False
    )
    assert to_queue_event(chunk) == TextChunkEvent(
        text="tok ", from_variable_selector=["llm", "text"], node_id="llm"
    )


def test_abort_becomes_a_user_stop() -> None:
    converted = to_queue_event(ev.GraphRunAbortedEvent(reason="stopped by user", outputs={"a": 1}))
    assert converted == StopEvent(
        stopped_by=StopBy.USER_MANUAL, reason="stopped by user", outputs={"a": 1}
    )


def test_a_real_runs_events_all_convert_and_round_trip() -> None:
    retry = {"retry_enabled": True, "max_retries": 2, "retry_interval": 0}
    graph = build(
        [
            start("x"),
            probe("flaky", fail_times=1, retry_config=retry),
            template("a", "A {{ v }}", v=["start", "x"]),
            template("b", "B {{ v }}", v=["start", "x"]),
            end(a=["a", "output"], b=["b", "output"]),
        ],
        [
            edge("start", "flaky"),
            edge("flaky", "a"),
            edge("flaky", "b"),
            edge("a", "end"),
            edge("b", "end"),
        ],
    )
    events = run_all(make_engine(graph, {"x": "hello"}))
    converted = [to_queue_event(e) for e in events]
    assert all(c is not None for c in converted)
    kinds = {c.event for c in converted if c is not None}
    assert {QueueEvent.NODE_RETRY, QueueEvent.PARALLEL_BRANCH_STARTED} <= kinds
    for item in converted:
        assert item is not None
        assert parse_queue_event(item.model_dump_json()) == item


def test_parsing_refuses_unknown_kinds() -> None:
    with pytest.raises(ValueError, match="does not match any of the expected tags"):
        parse_queue_event({"event": "teleport"})


def test_agent_events_carry_difys_fields() -> None:
    log = to_queue_event(
        ev.AgentLogEvent(**NODE, log_id="l2", label="CALL a", parent_id="l1", status="error",
                         data={"tool_name": "a"}, error="down", log_metadata={"p": 1})
    )  # fmt: skip
    assert log is not None
    assert log.model_dump(mode="json") == {
        "event": "agent_log", "id": "l2", "node_execution_id": NODE["id"],
        "node_id": NODE["node_id"], "label": "CALL a", "parent_id": "l1", "error": "down",
        "status": "error", "data": {"tool_name": "a"}, "metadata": {"p": 1},
    }  # fmt: skip
    thought = to_queue_event(
        ev.AgentThoughtEvent(**NODE, thought_id="t1", position=2, thought="t", observation="{}",
                             tool="a", tool_input='{"a": {}}', tool_labels={"a": {"en_US": "A"}})
    )  # fmt: skip
    assert thought is not None
    assert thought.model_dump(mode="json") == {
        "event": "agent_thought", "id": "t1", "position": 2, "thought": "t", "observation": "{}",
        "tool": "a", "tool_input": '{"a": {}}', "tool_labels": {"a": {"en_US": "A"}},
        "message_files": [], "node_id": NODE["node_id"], "node_execution_id": NODE["id"],
    }  # fmt: skip
