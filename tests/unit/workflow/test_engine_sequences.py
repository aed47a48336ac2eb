"""Exact event sequences: chain, diamond, if-else, retry, error strategies, abort, limits."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from relay.workflow import (
    ExecutionLimits,
    ExecutionLimitsLayer,
    GraphEngineLayer,
    GraphRunAbortedEvent,
    GraphRunFailedEvent,
    GraphRunPartialSucceededEvent,
    GraphRunSucceededEvent,
    NodeRunStreamChunkEvent,
    WorkflowError,
)
from relay.workflow.events import (
    GraphEngineEvent,
    NodeEventBase,
    NodeRunRetryEvent,
    NodeRunStartedEvent,
    NodeRunSucceededEvent,
)
from relay.workflow.graph import Graph
from relay.workflow.llm.base import ChatMessage, ChatRequest
from relay.workflow.llm.offline import offline_reply, tokenize

from .helpers import (
    BARRIERS,
    build,
    edge,
    end,
    make_engine,
    node,
    offline_services,
    probe,
    run_all,
    start,
    template,
    trace,
)


def test_linear_chain() -> None:
    graph = build(
        [
            start("name"),
            template("t1", "hello {{ n }}", n=["start", "name"]),
            template("t2", "{{ s | upper }}!", s=["t1", "output"]),
            end(result=["t2", "output"]),
        ],
        [edge("start", "t1"), edge("t1", "t2"), edge("t2", "end")],
    )
    events = run_all(make_engine(graph, {"name": "ada"}))
    assert trace(events) == [
        "GraphRunStarted",
        "NodeRunStarted start",
        "NodeRunSucceeded start",
        "NodeRunStarted t1",
        "NodeRunSucceeded t1",
        "NodeRunStarted t2",
        "NodeRunSucceeded t2",
        "NodeRunStarted end",
        "NodeRunSucceeded end",
        "GraphRunSucceeded",
    ]
    assert events[-1] == GraphRunSucceededEvent(outputs={"result": "HELLO ADA!"})
    started = events[3]
    assert started.model_dump()["predecessor_node_id"] == "start"


def _diamond(b: dict[str, Any], c: dict[str, Any]) -> Graph:
    return build(
        [
            start(),
            probe("a", value="A"),
            b,
            c,
            template("d", "{{ x }}+{{ y }}", x=["b", "value"], y=["c", "value"]),
            end(result=["d", "output"]),
        ],
        [
            edge("start", "a"),
            edge("a", "b"),
            edge("a", "c"),
            edge("b", "d"),
            edge("c", "d"),
            edge("d", "end"),
        ],
    )


def test_diamond_on_one_worker_is_fully_ordered() -> None:
    graph = _diamond(probe("b", value="B"), probe("c", value="C"))
    events = run_all(make_engine(graph, workers=1))
    assert trace(events) == [
        "GraphRunStarted",
        "NodeRunStarted start",
        "NodeRunSucceeded start",
        "NodeRunStarted a",
        "NodeRunSucceeded a",
        "ParallelBranchRunStarted b",
        "NodeRunStarted b",
        "NodeRunSucceeded b",
        "ParallelBranchRunSucceeded b",
        "ParallelBranchRunStarted c",
        "NodeRunStarted c",
        "NodeRunSucceeded c",
        "ParallelBranchRunSucceeded c",
        "NodeRunStarted d",
        "NodeRunSucceeded d",
        "NodeRunStarted end",
        "NodeRunSucceeded end",
        "GraphRunSucceeded",
    ]
    branch_b = [e for e in events if isinstance(e, NodeEventBase) and e.node_id == "b"]
    assert {e.parallel_id for e in branch_b} == {"a:source"}
    assert {e.parallel_start_node_id for e in branch_b} == {"b"}
    assert events[-1] == GraphRunSucceededEvent(outputs={"result": "B+C"})


def test_diamond_branches_run_in_parallel_and_join() -> None:
    # Both branches wait on one barrier: the run only finishes if they run at the same time.
    BARRIERS["diamond"] = threading.Barrier(2)
    graph = _diamond(
        probe("b", value="B", barrier="diamond"), probe("c", value="C", barrier="diamond")
    )
    events = run_all(make_engine(graph, workers=4))
    labels = trace(events)
    assert labels[:5] == [
        "GraphRunStarted",
        "NodeRunStarted start",
        "NodeRunSucceeded start",
        "NodeRunStarted a",
        "NodeRunSucceeded a",
    ]
    # Both branches are dispatched together, before either node reports back.
    assert labels[5:9] == [
        "ParallelBranchRunStarted b",
        "NodeRunStarted b",
        "ParallelBranchRunStarted c",
        "NodeRunStarted c",
    ]
    for branch in ("b", "c"):
        own = [x for x in labels if x.endswith(f" {branch}")]
        assert own == [
            f"ParallelBranchRunStarted {branch}",
            f"NodeRunStarted {branch}",
            f"NodeRunSucceeded {branch}",
            f"ParallelBranchRunSucceeded {branch}",
        ]
    # Then the two branches finish in either order.
    assert sorted(labels[9:13]) == [
        "NodeRunSucceeded b",
        "NodeRunSucceeded c",
        "ParallelBranchRunSucceeded b",
        "ParallelBranchRunSucceeded c",
    ]
    assert labels[13:] == [
        "NodeRunStarted d",
        "NodeRunSucceeded d",
        "NodeRunStarted end",
        "NodeRunSucceeded end",
        "GraphRunSucceeded",
    ]
    assert events[-1] == GraphRunSucceededEvent(outputs={"result": "B+C"})


def _if_else_graph() -> Graph:
    return build(
        [
            start("answer"),
            node(
                "check",
                "if-else",
                cases=[
                    {
                        "case_id": "true",
                        "logical_operator": "and",
                        "conditions": [
                            {
                                "variable_selector": ["start", "answer"],
                                "comparison_operator": "is",
                                "value": "yes",
                            }
                        ],
                    }
                ],
            ),
            probe("yes", value="took yes"),
            probe("no", value="took no"),
            probe("no_more", value="after no"),
            node("join", "variable-aggregator", variables=[["yes", "value"], ["no_more", "value"]]),
            end(result=["join", "output"]),
        ],
        [
            edge("start", "check"),
            edge("check", "yes", "true"),
            edge("check", "no", "false"),
            edge("no", "no_more"),
            edge("yes", "join"),
            edge("no_more", "join"),
            edge("join", "end"),
        ],
    )


def test_if_else_skips_the_untaken_branch() -> None:
    events = run_all(make_engine(_if_else_graph(), {"answer": "yes"}))
    assert trace(events) == [
        "GraphRunStarted",
        "NodeRunStarted start",
        "NodeRunSucceeded start",
        "NodeRunStarted check",
        "NodeRunSucceeded check",
        "NodeRunStarted yes",
        "NodeRunSucceeded yes",
        "NodeRunStarted join",
        "NodeRunSucceeded join",
        "NodeRunStarted end",
        "NodeRunSucceeded end",
        "GraphRunSucceeded",
    ]
    decided = events[4]
    assert isinstance(decided, NodeRunSucceededEvent)
    assert decided.outputs == {"result": True, "selected_case_id": "true"}
    assert events[-1] == GraphRunSucceededEvent(outputs={"result": "took yes"})


def test_if_else_else_branch() -> None:
    events = run_all(make_engine(_if_else_graph(), {"answer": "no"}))
    ran = [x.split()[1] for x in trace(events) if x.startswith("NodeRunSucceeded")]
    assert ran == ["start", "check", "no", "no_more", "join", "end"]
    assert events[-1] == GraphRunSucceededEvent(outputs={"result": "after no"})


def test_retry_emits_two_retry_events_then_succeeds() -> None:
    graph = build(
        [
            start(),
            probe(
                "flaky",
                value="ok",
                fail_times=2,
                retry_config={"retry_enabled": True, "max_retries": 3, "retry_interval": 1},
            ),
            end(result=["flaky", "value"]),
        ],
        [edge("start", "flaky"), edge("flaky", "end")],
    )
    events = run_all(make_engine(graph))
    assert trace(events) == [
        "GraphRunStarted",
        "NodeRunStarted start",
        "NodeRunSucceeded start",
        "NodeRunStarted flaky",
        "NodeRunRetry flaky 1",
        "NodeRunRetry flaky 2",
        "NodeRunSucceeded flaky",
        "NodeRunStarted end",
        "NodeRunSucceeded end",
        "GraphRunSucceeded",
    ]
    retries = [e for e in events if isinstance(e, NodeRunRetryEvent)]
    assert [r.error for r in retries] == ["attempt 1 failed", "attempt 2 failed"]
    assert len({e.id for e in events[3:7] if isinstance(e, NodeEventBase)}) == 1


def test_retries_exhausted_fail_the_run() -> None:
    graph = build(
        [
            start(),
            probe(
                "flaky",
                fail_times=5,
                retry_config={"retry_enabled": True, "max_retries": 1, "retry_interval": 1},
            ),
            end(result=["flaky", "value"]),
        ],
        [edge("start", "flaky"), edge("flaky", "end")],
    )
    events = run_all(make_engine(graph))
    assert trace(events)[3:] == [
        "NodeRunStarted flaky",
        "NodeRunRetry flaky 1",
        "NodeRunFailed flaky",
        "GraphRunFailed",
    ]
    assert events[-1] == GraphRunFailedEvent(error="attempt 2 failed", exceptions_count=0)


def test_default_value_strategy_ends_partially_succeeded() -> None:
    graph = build(
        [
            start(),
            probe(
                "bad",
                fail_times=9,
                error_strategy="default-value",
                default_value=[{"key": "value", "type": "string", "value": "fallback"}],
            ),
            end(result=["bad", "value"], why=["bad", "error_message"]),
        ],
        [edge("start", "bad"), edge("bad", "end")],
    )
    events = run_all(make_engine(graph))
    assert trace(events)[3:] == [
        "NodeRunStarted bad",
        "NodeRunException bad",
        "NodeRunStarted end",
        "NodeRunSucceeded end",
        "GraphRunPartialSucceeded",
    ]
    assert events[-1] == GraphRunPartialSucceededEvent(
        exceptions_count=1, outputs={"result": "fallback", "why": "attempt 1 failed"}
    )


def test_fail_branch_strategy_takes_the_fail_branch() -> None:
    graph = build(
        [
            start(),
            probe("bad", fail_times=9, error_strategy="fail-branch"),
            probe("happy", value="happy"),
            probe("handler", value="handled: {{#bad.error_message#}}"),
            end("end_ok", result=["happy", "value"]),
            end("end_err", result=["handler", "value"]),
        ],
        [
            edge("start", "bad"),
            edge("bad", "happy"),
            edge("bad", "handler", "fail-branch"),
            edge("happy", "end_ok"),
            edge("handler", "end_err"),
        ],
    )
    events = run_all(make_engine(graph))
    assert trace(events)[3:] == [
        "NodeRunStarted bad",
        "NodeRunException bad",
        "NodeRunStarted handler",
        "NodeRunSucceeded handler",
        "NodeRunStarted end_err",
        "NodeRunSucceeded end_err",
        "GraphRunPartialSucceeded",
    ]
    assert events[-1] == GraphRunPartialSucceededEvent(
        exceptions_count=1, outputs={"result": "handled: attempt 1 failed"}
    )


LONG_PROMPT = " ".join(f"word{i}" for i in range(40))


def _streaming_graph() -> Graph:
    return build(
        [
            start(),
            node(
                "llm",
                "llm",
                model={"provider": "openai", "name": "gpt-4o", "mode": "chat"},
                prompt_template=[{"role": "user", "text": LONG_PROMPT}],
            ),
            end(text=["llm", "text"]),
        ],
        [edge("start", "llm"), edge("llm", "end")],
    )


def test_abort_mid_stream_stops_chunks_and_ends_aborted() -> None:
    request = ChatRequest("gpt-4o", (ChatMessage("user", LONG_PROMPT),))
    tokens = tokenize(offline_reply(request))
    assert len(tokens) > 20
    engine = make_engine(_streaming_graph(), services=offline_services(token_delay=0.01))
    seen: list[GraphEngineEvent] = []
    for event in engine.run():
        seen.append(event)
        if sum(isinstance(e, NodeRunStreamChunkEvent) for e in seen) == 3:
            engine.stop("user pressed stop")
    assert trace(seen) == [
        "GraphRunStarted",
        "NodeRunStarted start",
        "NodeRunSucceeded start",
        "NodeRunStarted llm",
        *[f"NodeRunStreamChunk end {token!r}" for token in tokens[:3]],
        "GraphRunAborted",
    ]
    assert seen[-1] == GraphRunAbortedEvent(reason="user pressed stop", outputs={})


def test_stream_chunks_are_attributed_to_the_end_node() -> None:
    events = run_all(make_engine(_streaming_graph()))
    streamed = [e for e in events if isinstance(e, NodeRunStreamChunkEvent)]
    assert {e.node_id for e in streamed} == {"end"}
    assert {tuple(e.selector) for e in streamed} == {("llm", "text")}
    assert streamed[-1].is_final
    assert streamed[-1].chunk == ""
    final = events[-1]
    assert isinstance(final, GraphRunSucceededEvent)
    assert "".join(e.chunk for e in streamed) == final.outputs["text"]
    assert final.outputs["text"].startswith("[offline reply ")


def test_max_steps_fails_the_run() -> None:
    nodes = [start()] + [probe(f"p{i}", value=str(i)) for i in range(5)]
    edges = [edge("start", "p0")] + [edge(f"p{i}", f"p{i + 1}") for i in range(4)]
    layer = ExecutionLimitsLayer(ExecutionLimits(max_steps=3))
    events = run_all(make_engine(build(nodes, edges), layers=[layer]))
    assert trace(events) == [
        "GraphRunStarted",
        "NodeRunStarted start",
        "NodeRunSucceeded start",
        "NodeRunStarted p0",
        "NodeRunSucceeded p0",
        "NodeRunStarted p1",
        "NodeRunSucceeded p1",
        "NodeRunStarted p2",
        "GraphRunFailed",
    ]
    assert events[-1] == GraphRunFailedEvent(
        error="max steps exceeded: more than 3 node runs", exceptions_count=0
    )


def test_max_time_fails_a_run_stuck_in_a_node() -> None:
    graph = build(
        [start(), probe("slow", sleep=30), end(r=["slow", "value"])],
        [edge("start", "slow"), edge("slow", "end")],
    )
    layer = ExecutionLimitsLayer(ExecutionLimits(max_time=0.2))
    events = run_all(make_engine(graph, layers=[layer]))
    assert trace(events) == [
        "GraphRunStarted",
        "NodeRunStarted start",
        "NodeRunSucceeded start",
        "NodeRunStarted slow",
        "GraphRunFailed",
    ]
    assert events[-1] == GraphRunFailedEvent(
        error="max execution time exceeded: 0.2s", exceptions_count=0
    )


def test_a_failing_layer_does_not_break_the_run() -> None:
    class Broken(GraphEngineLayer):
        def on_event(self, event: GraphEngineEvent) -> None:
            raise RuntimeError("store is down")

    graph = build([start(), end()], [edge("start", "end")])
    events = run_all(make_engine(graph, layers=[Broken()]))
    assert isinstance(events[-1], GraphRunSucceededEvent)


def test_failure_in_one_branch_fails_that_branch_and_the_run() -> None:
    graph = build(
        [
            start(),
            probe("a"),
            probe("bad", fail_times=9),
            probe("good"),
            template("j", "x", a=["bad", "value"], b=["good", "value"]),
            end(),
        ],
        [
            edge("start", "a"),
            edge("a", "bad"),
            edge("a", "good"),
            edge("bad", "j"),
            edge("good", "j"),
            edge("j", "end"),
        ],
    )
    events = run_all(make_engine(graph, workers=1))
    labels = trace(events)
    assert labels[5:9] == [
        "ParallelBranchRunStarted bad",
        "NodeRunStarted bad",
        "NodeRunFailed bad",
        "ParallelBranchRunFailed bad",
    ]
    assert "NodeRunStarted good" not in labels  # nothing starts after a failure
    assert labels[-1] == "GraphRunFailed"


def test_an_engine_runs_once() -> None:
    engine = make_engine(build([start(), end()], [edge("start", "end")]))
    run_all(engine)
    with pytest.raises(WorkflowError):
        engine.run()


def test_closing_the_event_stream_stops_running_nodes() -> None:
    graph = build(
        [start(), probe("slow", sleep=30), end(r=["slow", "value"])],
        [edge("start", "slow"), edge("slow", "end")],
    )
    engine = make_engine(graph)
    events = engine.run()
    for event in events:
        if isinstance(event, NodeRunStartedEvent) and event.node_id == "slow":
            break
    events.close()  # returns only once the slow node has been told to stop and has ended
    assert engine.steps == 2


def test_step_limit_hit_while_dispatching_a_fan_out_starts_nothing_more() -> None:
    graph = build(
        [start(), probe("a"), probe("b"), probe("c"), end()],
        [
            edge("start", "a"),
            edge("start", "b"),
            edge("start", "c"),
            edge("a", "end"),
            edge("b", "end"),
            edge("c", "end"),
        ],
    )
    layer = ExecutionLimitsLayer(ExecutionLimits(max_steps=2))
    events = run_all(make_engine(graph, layers=[layer]))
    labels = trace(events)
    assert labels[:7] == [
        "GraphRunStarted",
        "NodeRunStarted start",
        "NodeRunSucceeded start",
        "ParallelBranchRunStarted a",
        "NodeRunStarted a",
        "ParallelBranchRunStarted b",
        "NodeRunStarted b",
    ]
    # a was already submitted: it either finished or saw the stop before running. b and c
    # never ran.
    assert labels[7:] in (
        ["NodeRunSucceeded a", "ParallelBranchRunSucceeded a", "GraphRunFailed"],
        ["GraphRunFailed"],
    )
