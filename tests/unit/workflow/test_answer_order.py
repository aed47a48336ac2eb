"""An answer's text never goes out before the events of the nodes that run before it."""

from __future__ import annotations

from relay.streaming.queue_events import to_queue_event
from relay.workflow.events import NodeRunStartedEvent, NodeRunStreamChunkEvent

from .helpers import build, edge, make_engine, node, run_all, start, template, trace


def _answer(text: str, node_id: str = "answer") -> dict[str, object]:
    return node(node_id, "answer", answer=text)


def _llm(node_id: str = "llm") -> dict[str, object]:
    return node(
        node_id,
        "llm",
        model={"provider": "openai", "name": "gpt-4o-mini", "mode": "chat"},
        prompt_template=[{"role": "user", "text": "{{#sys.query#}}"}],
    )


def _first_chunk(events: list[object]) -> int:
    return next(i for i, e in enumerate(events) if isinstance(e, NodeRunStreamChunkEvent))


def _started(events: list[object], node_id: str) -> int:
    return next(
        i for i, e in enumerate(events)
        if isinstance(e, NodeRunStartedEvent) and e.node_id == node_id
    )  # fmt: skip


def test_leading_text_waits_for_the_start_node_and_the_answer() -> None:
    graph = build([start(), _answer("You asked: {{#sys.query#}}")], [edge("start", "answer")])
    events = run_all(make_engine(graph, query="hello"))
    assert trace(events) == [
        "GraphRunStarted",
        "NodeRunStarted start",
        "NodeRunSucceeded start",
        "NodeRunStarted answer",
        "NodeRunStreamChunk answer 'You asked: '",
        "NodeRunStreamChunk answer 'hello'",
        "NodeRunSucceeded answer",
        "GraphRunSucceeded",
    ]
    queued = [to_queue_event(e) for e in events]
    names = [q.event.value for q in queued if q is not None]
    assert names.index("node_started") < names.index("text_chunk")


def test_text_before_a_streamed_llm_waits_for_the_llm_to_start() -> None:
    graph = build(
        [start(), _llm(), _answer("Q: {{#sys.query#}} A: {{#llm.text#}}")],
        [edge("start", "llm"), edge("llm", "answer")],
    )
    events = run_all(make_engine(graph, query="what is relay"))
    first = _first_chunk(events)
    assert first > _started(events, "llm") > _started(events, "start")
    # The llm's reply still streams while the llm runs, before the answer node starts.
    text = [e.chunk for e in events if isinstance(e, NodeRunStreamChunkEvent)]
    assert text[:2] == ["Q: ", "what is relay"]
    llm_done = next(
        i for i, e in enumerate(events)
        if type(e).__name__ == "NodeRunSucceededEvent" and getattr(e, "node_id", "") == "llm"
    )  # fmt: skip
    assert first < llm_done


def test_text_after_a_slow_branch_waits_for_its_node() -> None:
    graph = build(
        [start("name"), template("tpl", "Hi {{ n }}", n=["start", "name"]),
         _answer("Greeting: {{#tpl.output#}}!")],
        [edge("start", "tpl"), edge("tpl", "answer")],
    )  # fmt: skip
    events = run_all(make_engine(graph, {"name": "Ada"}))
    labels = trace(events)
    assert labels.index("NodeRunStreamChunk answer 'Greeting: '") > labels.index(
        "NodeRunStarted tpl"
    )
    assert "".join(e.chunk for e in events if isinstance(e, NodeRunStreamChunkEvent)) == (
        "Greeting: Hi Ada!"
    )
