"""Nodes that need no outside service: start, template, assigner, aggregator, retrieval."""

from __future__ import annotations

from relay.workflow import (
    GraphRunFailedEvent,
    GraphRunSucceededEvent,
    InMemoryKnowledgeIndex,
    NodeRunRetrieverResourceEvent,
    NodeRunSucceededEvent,
)

from .helpers import build, edge, end, make_engine, node, offline_services, run_all, start, template


def test_start_checks_required_and_select_inputs() -> None:
    graph = build(
        [
            node(
                "start",
                "start",
                variables=[
                    {
                        "variable": "title",
                        "label": "Title",
                        "type": "text-input",
                        "required": True,
                        "max_length": 5,
                    },
                    {
                        "variable": "size",
                        "type": "select",
                        "options": ["S", "M"],
                        "required": False,
                    },
                ],
            ),
            end(t=["start", "title"], s=["start", "size"]),
        ],
        [edge("start", "end")],
    )
    assert run_all(make_engine(graph, {}))[-1] == GraphRunFailedEvent(
        error="input 'Title' is required", exceptions_count=0
    )
    assert run_all(make_engine(graph, {"title": "too long"}))[-1] == GraphRunFailedEvent(
        error="input 'Title' is longer than 5 characters", exceptions_count=0
    )
    assert run_all(make_engine(graph, {"title": "ok", "size": "XL"}))[-1] == GraphRunFailedEvent(
        error="input 'size' must be one of ['S', 'M']", exceptions_count=0
    )
    assert run_all(make_engine(graph, {"title": "ok"}))[-1] == GraphRunSucceededEvent(
        outputs={"t": "ok", "s": None}
    )


def test_template_runs_in_jinja_sandbox() -> None:
    graph = build(
        [
            start("x"),
            template("t", "{{ x.__class__.__mro__ }}", x=["start", "x"]),
            end(o=["t", "output"]),
        ],
        [edge("start", "t"), edge("t", "end")],
    )
    final = run_all(make_engine(graph, {"x": "s"}))[-1]
    assert isinstance(final, GraphRunFailedEvent)
    assert final.error.startswith("template error: access to attribute '__class__'")


def test_assigner_writes_conversation_variables() -> None:
    graph = build(
        [
            start("v"),
            node(
                "set",
                "assigner",
                assigned_variable_selector=["conversation", "token"],
                input_variable_selector=["start", "v"],
                write_mode="over-write",
            ),
            node(
                "more",
                "assigner",
                version="2",
                items=[
                    {
                        "variable_selector": ["conversation", "count"],
                        "operation": "+=",
                        "input_type": "constant",
                        "value": 2,
                    },
                    {
                        "variable_selector": ["conversation", "seen"],
                        "operation": "append",
                        "input_type": "variable",
                        "value": ["start", "v"],
                    },
                ],
            ),
            end(t=["conversation", "token"]),
        ],
        [edge("start", "set"), edge("set", "more"), edge("more", "end")],
    )
    engine = make_engine(graph, {"v": "abc"}, conversation={"token": "", "count": 1, "seen": []})
    assert run_all(engine)[-1] == GraphRunSucceededEvent(outputs={"t": "abc"})
    assert engine.pool.conversation_variables() == {"token": "abc", "count": 3, "seen": ["abc"]}


def test_aggregator_groups() -> None:
    graph = build(
        [
            start("a", "b", "missing"),
            node(
                "agg",
                "variable-aggregator",
                advanced_settings={
                    "group_enabled": True,
                    "groups": [
                        {"group_name": "g1", "variables": [["start", "missing"], ["start", "a"]]},
                        {"group_name": "g2", "variables": [["start", "b"]]},
                    ],
                },
            ),
            end(g1=["agg", "g1", "output"], g2=["agg", "g2", "output"]),
        ],
        [edge("start", "agg"), edge("agg", "end")],
    )
    assert run_all(make_engine(graph, {"a": "A", "b": "B"}))[-1] == GraphRunSucceededEvent(
        outputs={"g1": "A", "g2": "B"}
    )


def test_knowledge_retrieval_feeds_llm_context_and_is_tenant_scoped() -> None:
    index = InMemoryKnowledgeIndex()
    index.add("t1", "ds1", "Tides are caused by the moon's gravity.", document_name="tides.md")
    index.add("t1", "ds1", "Bread needs flour, water and yeast.", document_name="bread.md")
    index.add("t2", "ds1", "Tides secret of another tenant.", document_name="other.md")
    graph = build(
        [
            start(),
            node(
                "kr",
                "knowledge-retrieval",
                query_variable_selector=["sys", "query"],
                dataset_ids=["ds1"],
                retrieval_mode="multiple",
                multiple_retrieval_config={"top_k": 4},
            ),
            node(
                "llm",
                "llm",
                model={"provider": "openai", "name": "gpt-4o"},
                context={"enabled": True, "variable_selector": ["kr", "result"]},
                prompt_template=[
                    {"role": "system", "text": "<info>{{#context#}}</info>"},
                    {"role": "user", "text": "{{#sys.query#}}"},
                ],
            ),
            node("answer", "answer", answer="{{#llm.text#}}"),
        ],
        [edge("start", "kr"), edge("kr", "llm"), edge("llm", "answer")],
    )
    events = run_all(
        make_engine(graph, query="what causes tides?", services=offline_services(knowledge=index))
    )
    resource = next(e for e in events if isinstance(e, NodeRunRetrieverResourceEvent))
    assert [r["document_name"] for r in resource.resources] == ["tides.md"]
    assert resource.context == "Tides are caused by the moon's gravity."
    llm = next(e for e in events if isinstance(e, NodeRunSucceededEvent) and e.node_id == "llm")
    assert llm.process_data["prompts"][0] == {
        "role": "system",
        "text": "<info>Tides are caused by the moon's gravity.</info>",
    }
    assert llm.metadata["provider"] == "offline"
    assert isinstance(events[-1], GraphRunSucceededEvent)
