"""Bugs found running real exports: start-node system variables, unknown references, memory
turns, file sub-conditions in if-else, and vision input."""

from __future__ import annotations

from typing import Any

import pytest

from relay.services.workflow_check import graph_problems
from relay.workflow import (
    EngineConfig,
    GraphEngine,
    LLMProviderConfig,
    LLMSettings,
    RunInfo,
    SystemVariables,
    VariablePool,
    create_services,
    graph_from_dict,
    validate_graph,
)
from relay.workflow.errors import GraphValidationError
from relay.workflow.events import GraphRunFailedEvent, GraphRunSucceededEvent, NodeRunFailedEvent
from relay.workflow.graph import Graph
from relay.workflow.llm.base import ChatMessage
from relay.workflow.nodes.llm import last_turns

from .helpers import build, edge, end, make_engine, node, offline_services, registry, run_all, start

IMAGE = {"type": "image", "transfer_method": "remote_url", "url": "http://files.local/cat.png"}
PDF = {"transfer_method": "remote_url", "url": "http://files.local/report.pdf"}


def _engine(
    graph: Graph,
    *,
    files: list[dict[str, Any]] | None = None,
    history: tuple[ChatMessage, ...] = (),
    query: str = "hello",
    vision: bool = True,
    inputs: dict[str, Any] | None = None,
) -> GraphEngine:
    services = create_services(
        llm=LLMSettings(default=LLMProviderConfig(kind="offline", token_delay=0, vision=vision))
    )
    pool = VariablePool(
        system=SystemVariables(query=query, files=files or [], workflow_run_id="r1"),
        user_inputs=inputs or {},
    )
    return GraphEngine(
        graph,
        pool,
        registry=registry(),
        services=services,
        run_info=RunInfo(tenant_id="t1", run_id="r1", chat_history=history),
        config=EngineConfig(max_workers=2, idle_tick=0.05),
    )


def test_start_node_exposes_system_variables_as_older_exports_read_them() -> None:
    graph = build(
        [
            start("topic"),
            node("t", "template-transform", template="{{ q }}|{{ u or '-' }}", variables=[
                {"variable": "q", "value_selector": ["start", "sys.query"]},
                {"variable": "u", "value_selector": ["start", "sys.user_id"]},
            ]),
            node("a", "answer", answer="{{#start.sys.query#}}/{{#t.output#}}"),
            end(q=["start", "sys.query"], a=["a", "answer"]),
        ],
        [edge("start", "t"), edge("t", "a"), edge("a", "end")],
    )  # fmt: skip
    engine = make_engine(graph, {"topic": "x"}, query="what is relay?")
    last = run_all(engine)[-1]
    assert isinstance(last, GraphRunSucceededEvent)
    assert last.outputs["q"] == "what is relay?"
    assert last.outputs["a"] == "what is relay?/what is relay?|-"


def test_reference_to_an_output_no_node_produces_is_refused_naming_node_and_selector() -> None:
    graph = graph_from_dict(
        {
            "nodes": [
                start("topic"),
                node("t", "template-transform", template="{{ x }}", variables=[
                    {"variable": "x", "value_selector": ["start", "topik"]},
                ]),
                end(out=["t", "text"]),
            ],
            "edges": [edge("start", "t"), edge("t", "end")],
        }
    )  # fmt: skip
    with pytest.raises(GraphValidationError) as caught:
        validate_graph(graph, registry())
    problems = {(p["node_id"], p["message"]) for p in caught.value.problems}
    assert any(
        node_id == "t" and "'start.topik'" in msg and "no output 'topik'" in msg
        for node_id, msg in problems
    )
    assert any(node_id == "end" and "'t.text'" in msg for node_id, msg in problems)


def test_knowledge_retrieval_names_the_empty_selector() -> None:
    graph = build(
        [
            start(),
            node("kr", "knowledge-retrieval", query_variable_selector=["start", "sys.query"],
                 dataset_ids=["ds1"]),
            end(r=["kr", "result"]),
        ],
        [edge("start", "kr"), edge("kr", "end")],
    )  # fmt: skip
    events = run_all(make_engine(graph, {}, query=None))
    failed = [e for e in events if isinstance(e, NodeRunFailedEvent)]
    assert failed
    assert "'start.sys.query'" in failed[0].error


def _history(turns: int) -> tuple[ChatMessage, ...]:
    messages: list[ChatMessage] = []
    for turn in range(turns):
        messages += [ChatMessage("user", f"q{turn}"), ChatMessage("assistant", f"a{turn}")]
    return tuple(messages)


def test_memory_window_counts_turns() -> None:
    assert len(last_turns(_history(8), 10)) == 16
    kept = last_turns(_history(8), 3)
    assert [m.content for m in kept] == ["q5", "a5", "q6", "a6", "q7", "a7"]
    # A turn with two replies still counts once, and never starts with an orphan reply.
    odd = (ChatMessage("assistant", "hi"), *_history(2), ChatMessage("assistant", "more"))
    assert [m.content for m in last_turns(odd, 1)] == ["q1", "a1", "more"]
    assert last_turns(odd, 0) == []


def _llm(**data: Any) -> dict[str, Any]:
    return node(
        "llm",
        "llm",
        model={"provider": "openai", "name": "gpt-4o", "mode": "chat"},
        prompt_template=[{"role": "system", "text": "be brief"}],
        **data,
    )


def test_llm_memory_window_sends_whole_turns() -> None:
    graph = build(
        [start(), _llm(memory={"window": {"enabled": True, "size": 3}}), end(t=["llm", "text"])],
        [edge("start", "llm"), edge("llm", "end")],
    )
    events = run_all(_engine(graph, history=_history(8), query="now"))
    done = next(e for e in events if getattr(e, "node_id", "") == "llm" and hasattr(e, "outputs")
                and e.outputs)  # fmt: skip
    prompts = done.process_data["prompts"]
    assert [p["text"] for p in prompts] == ["be brief", "q5", "a5", "q6", "a6", "q7", "a7", "now"]


def _files_if(operator: str, *subs: dict[str, Any], logical: str = "and") -> Graph:
    condition = {
        "variable_selector": ["sys", "files"],
        "comparison_operator": operator,
        "varType": "array[file]",
        "sub_variable_condition": {"logical_operator": logical, "conditions": list(subs)},
    }
    return build(
        [
            start(),
            node("if", "if-else", cases=[{"case_id": "yes", "conditions": [condition]}]),
            node("y", "answer", answer="yes"),
            node("n", "answer", answer="no"),
        ],
        [edge("start", "if"), edge("if", "y", "yes"), edge("if", "n", "false")],
    )


def _branch(graph: Graph, files: list[dict[str, Any]]) -> str:
    events = run_all(_engine(graph, files=files))
    done = [e for e in events if getattr(e, "node_id", "") == "if" and getattr(e, "outputs", None)]
    return str(done[0].outputs["selected_case_id"])


def test_if_else_file_sub_conditions_are_evaluated() -> None:
    has_image = _files_if("contains", {"key": "type", "comparison_operator": "in",
                                       "value": ["image"]})  # fmt: skip
    assert _branch(has_image, [PDF, IMAGE]) == "yes"
    assert _branch(has_image, [PDF]) == "false"
    assert _branch(has_image, []) == "false"
    no_pdf = _files_if("not contains", {"key": "extension", "comparison_operator": "is",
                                        "value": "pdf"})  # fmt: skip
    assert _branch(no_pdf, [IMAGE]) == "yes"
    assert _branch(no_pdf, [IMAGE, PDF]) == "false"
    all_images = _files_if("all of", {"key": "type", "comparison_operator": "is",
                                      "value": "image"})  # fmt: skip
    assert _branch(all_images, [IMAGE, IMAGE]) == "yes"
    assert _branch(all_images, [IMAGE, PDF]) == "false"


def test_if_else_refuses_unknown_file_attribute() -> None:
    with pytest.raises(GraphValidationError, match="file attribute 'colour'"):
        _files_if("contains", {"key": "colour", "comparison_operator": "is", "value": "red"})


def test_llm_vision_sends_images_to_a_provider_that_supports_it() -> None:
    graph = build(
        [start(), _llm(vision={"enabled": True, "configs": {"variable_selector": ["sys", "files"]}},
                       memory={"window": {"enabled": False}}), end(t=["llm", "text"])],
        [edge("start", "llm"), edge("llm", "end")],
    )  # fmt: skip
    events = run_all(_engine(graph, files=[IMAGE, PDF], query="what is this?"))
    last = events[-1]
    assert isinstance(last, GraphRunSucceededEvent)
    assert "[1 image received]" in last.outputs["t"]
    without = run_all(_engine(graph, files=[PDF], query="what is this?"))[-1]
    assert isinstance(without, GraphRunSucceededEvent)
    assert "image" not in without.outputs["t"]


def test_llm_vision_is_refused_where_the_provider_has_none() -> None:
    graph = build(
        [start(), _llm(vision={"enabled": True}), end(t=["llm", "text"])],
        [edge("start", "llm"), edge("llm", "end")],
    )
    last = run_all(_engine(graph, files=[IMAGE], vision=False))[-1]
    assert isinstance(last, GraphRunFailedEvent)
    assert "without vision support" in last.error


def test_offline_services_still_build() -> None:
    assert offline_services().llm.supports_vision("n", "openai")


def test_vision_is_refused_at_validation_when_the_provider_takes_no_images() -> None:
    raw = {
        "nodes": [start(), _llm(vision={"enabled": True}), end(t=["llm", "text"])],
        "edges": [edge("start", "llm"), edge("llm", "end")],
    }
    validate_graph(graph_from_dict(raw), registry())  # accepted where images are taken
    with pytest.raises(GraphValidationError) as caught:
        validate_graph(graph_from_dict(raw), registry(), vision_supported=False)
    assert caught.value.problems == [
        {
            "node_id": "llm",
            "field": "vision.enabled",
            "message": "node 'llm' (\"llm\") enables vision, but the configured LLM provider "
            "does not accept images",
        }
    ]
    problems = graph_problems(raw, vision_supported=False)
    assert [p["field"] for p in problems] == ["vision.enabled"]
