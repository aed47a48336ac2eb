"""Answer streaming: text and values go out as they become available, one answer at a time."""

from __future__ import annotations

from typing import Any

from relay.workflow import GraphRunSucceededEvent, NodeRunStreamChunkEvent

from .helpers import build, edge, make_engine, node, probe, run_all, start, trace

LLM: dict[str, Any] = {"model": {"provider": "openai", "name": "gpt-4o"}}


def test_answer_streams_text_then_llm_chunks_then_the_rest() -> None:
    graph = build(
        [
            start(),
            node("llm", "llm", prompt_template=[{"role": "user", "text": "one two"}], **LLM),
            node("answer", "answer", answer="Hi! {{#llm.text#}} Bye, {{#sys.query#}}."),
        ],
        [edge("start", "llm"), edge("llm", "answer")],
    )
    events = run_all(make_engine(graph, query="ada"))
    labels = trace(events)
    # The leading text goes out as soon as the llm it comes before has started, never before
    # the start node's events.
    assert labels[:6] == [
        "GraphRunStarted",
        "NodeRunStarted start",
        "NodeRunSucceeded start",
        "NodeRunStarted llm",
        "NodeRunStreamChunk answer 'Hi! '",
        labels[5],
    ]
    assert labels[5].startswith("NodeRunStreamChunk answer '[offline")
    streamed = [e for e in events if isinstance(e, NodeRunStreamChunkEvent)]
    assert [tuple(e.selector) for e in streamed][:2] == [("answer", "answer"), ("llm", "text")]
    text = "".join(e.chunk for e in streamed)
    final = events[-1]
    assert isinstance(final, GraphRunSucceededEvent)
    assert text == final.outputs["answer"]
    assert text.startswith("Hi! [offline reply ")
    assert text.endswith("one two Bye, ada.")
    last_llm_chunk = max(
        i
        for i, e in enumerate(events)
        if isinstance(e, NodeRunStreamChunkEvent) and e.selector == ["llm", "text"]
    )
    # The text after the last streamed value waits for the answer node itself.
    assert labels[last_llm_chunk + 1 :] == [
        "NodeRunSucceeded llm",
        "NodeRunStarted answer",
        "NodeRunStreamChunk answer ' Bye, '",
        "NodeRunStreamChunk answer 'ada'",
        "NodeRunStreamChunk answer '.'",
        "NodeRunSucceeded answer",
        "GraphRunSucceeded",
    ]


def test_answers_behind_an_if_else_wait_for_the_decision() -> None:
    graph = build(
        [
            start("x"),
            node(
                "check",
                "if-else",
                cases=[
                    {
                        "case_id": "true",
                        "conditions": [
                            {
                                "variable_selector": ["start", "x"],
                                "comparison_operator": "is",
                                "value": "a",
                            }
                        ],
                    }
                ],
            ),
            node("ans_a", "answer", answer="A!"),
            node("ans_b", "answer", answer="B!"),
            probe("after", value="after"),
            node("ans_c", "answer", answer=" then {{#after.value#}}"),
        ],
        [
            edge("start", "check"),
            edge("check", "ans_a", "true"),
            edge("check", "ans_b", "false"),
            edge("ans_a", "after"),
            edge("after", "ans_c"),
        ],
    )
    events = run_all(make_engine(graph, {"x": "a"}))
    labels = trace(events)
    assert labels == [
        "GraphRunStarted",
        "NodeRunStarted start",
        "NodeRunSucceeded start",
        "NodeRunStarted check",
        "NodeRunSucceeded check",
        "NodeRunStarted ans_a",
        "NodeRunStreamChunk ans_a 'A!'",
        "NodeRunSucceeded ans_a",
        "NodeRunStarted after",
        "NodeRunStreamChunk ans_c ' then '",
        "NodeRunSucceeded after",
        "NodeRunStreamChunk ans_c 'after'",
        "NodeRunStarted ans_c",
        "NodeRunSucceeded ans_c",
        "GraphRunSucceeded",
    ]
    assert events[-1] == GraphRunSucceededEvent(outputs={"answer": "A! then after"})
