"""Graph structure and DSL import: clear errors naming the offending node."""

from __future__ import annotations

import pytest

from relay.workflow import (
    DSLError,
    GraphValidationError,
    UnsupportedNodeTypeError,
    graph_from_dict,
    load_dsl,
    validate_graph,
)
from relay.workflow.parallels import BranchIndex

from .helpers import build, edge, end, node, probe, registry, start, template


def _dsl(
    nodes: list[dict[str, object]], edges: list[dict[str, object]], mode: str = "workflow"
) -> dict[str, object]:
    return {
        "kind": "app",
        "version": "0.1.5",
        "app": {"name": "t", "mode": mode},
        "workflow": {"graph": {"nodes": nodes, "edges": edges}},
    }


@pytest.mark.parametrize("kind", ["datasource", "knowledge-index"])
def test_unsupported_node_type_names_the_node(kind: str) -> None:
    raw = node("n42", kind)
    raw["data"]["title"] = "Google Search"
    document = _dsl([start(), raw, end()], [edge("start", "n42"), edge("n42", "end")])
    with pytest.raises(UnsupportedNodeTypeError) as caught:
        load_dsl(document)
    message = caught.value.message
    assert f"node 'n42' (\"Google Search\") has type '{kind}'" in message
    assert "which relay does not support" in message
    assert caught.value.details == [{"node_id": "n42", "node_type": kind, "title": "Google Search"}]


def test_cycle_is_rejected_with_its_nodes() -> None:
    with pytest.raises(GraphValidationError, match="cycle in the workflow through node 'a'"):
        graph_from_dict(
            {
                "nodes": [start(), probe("a"), probe("b"), end()],
                "edges": [edge("start", "a"), edge("a", "b"), edge("b", "a"), edge("b", "end")],
            }
        )


def test_dangling_edge_is_rejected() -> None:
    with pytest.raises(GraphValidationError, match="edge 'start-source-ghost' is dangling"):
        graph_from_dict({"nodes": [start(), end()], "edges": [edge("start", "ghost")]})


def test_needs_exactly_one_start() -> None:
    with pytest.raises(GraphValidationError, match="exactly one start node, found 0"):
        graph_from_dict({"nodes": [end()], "edges": []})


def test_reference_to_a_node_that_does_not_run_before() -> None:
    graph = graph_from_dict(
        {
            "nodes": [
                start(),
                template("t", "{{ x }}", x=["later", "value"]),
                probe("later"),
                end(),
            ],
            "edges": [edge("start", "t"), edge("t", "later"), edge("later", "end")],
        }
    )
    with pytest.raises(GraphValidationError) as caught:
        validate_graph(graph, registry())
    assert caught.value.message == (
        "invalid workflow graph: node 't' (\"t\") reads 'later.value', "
        "but node 'later' does not run before it"
    )


def test_reference_to_a_missing_node_and_an_undeclared_env_variable() -> None:
    graph = graph_from_dict(
        {
            "nodes": [
                start(),
                template("t", "{{ x }}{{ y }}", x=["nope", "v"], y=["env", "key"]),
                end(),
            ],
            "edges": [edge("start", "t"), edge("t", "end")],
        }
    )
    with pytest.raises(GraphValidationError) as caught:
        validate_graph(graph, registry(), environment_names=[])
    assert caught.value.details == [
        "node 't' (\"t\") reads 'nope.v', but node 'nope' does not exist",
        "node 't' (\"t\") reads environment variable 'key', not declared",
    ]


def test_iteration_body_may_read_item_and_upstream_of_the_iteration() -> None:
    build(
        [
            start("q"),
            probe("src", output=[1]),
            node(
                "it",
                "iteration",
                iterator_selector=["src", "value"],
                output_selector=["w", "value"],
                start_node_id="it-start",
            ),
            node("it-start", "iteration-start", "it"),
            probe("w", "it", value="{{#it.item#}} {{#start.q#}} {{#src.value#}}"),
            end(r=["it", "output"]),
        ],
        [edge("start", "src"), edge("src", "it"), edge("it-start", "w"), edge("it", "end")],
    )


def test_iteration_output_must_come_from_its_body() -> None:
    with pytest.raises(GraphValidationError, match="which is not inside the iteration"):
        build(
            [
                start(),
                probe("src", output=[1]),
                node(
                    "it",
                    "iteration",
                    iterator_selector=["src", "value"],
                    output_selector=["src", "value"],
                    start_node_id="it-start",
                ),
                node("it-start", "iteration-start", "it"),
                end(),
            ],
            [edge("start", "src"), edge("src", "it"), edge("it", "end")],
        )


def test_invalid_node_data_names_the_node() -> None:
    graph = graph_from_dict(
        {
            "nodes": [
                start(),
                node("c", "code", code="def main(): return {}", code_language="javascript"),
                end(),
            ],
            "edges": [edge("start", "c"), edge("c", "end")],
        }
    )
    with pytest.raises(GraphValidationError, match=r"node 'c' .* relay runs python3 code only"):
        validate_graph(graph, registry())


def test_unreachable_nodes_are_pruned_and_notes_dropped() -> None:
    note = {"id": "note1", "type": "custom-note", "data": {"type": "", "text": "hi"}}
    graph = graph_from_dict(
        {
            "nodes": [start(), probe("a"), probe("island"), end(), note],
            "edges": [edge("start", "a"), edge("a", "end")],
        }
    )
    assert set(graph.nodes) == {"start", "a", "end"}
    assert graph.pruned == ["island"]


def test_dsl_errors() -> None:
    with pytest.raises(DSLError, match="not valid YAML"):
        load_dsl("a: [")
    with pytest.raises(DSLError, match="app mode 'chat' has no workflow graph"):
        load_dsl(_dsl([start()], [], mode="chat"))
    with pytest.raises(DSLError, match="not an app export"):
        load_dsl({"kind": "plugin"})


def test_parallel_branches_nest() -> None:
    graph = build(
        [
            start(),
            probe("a"),
            probe("b"),
            probe("b1"),
            probe("b2"),
            probe("c"),
            template("j", "x", x=["b1", "value"], y=["b2", "value"], z=["c", "value"]),
            end(),
        ],
        [
            edge("start", "a"),
            edge("a", "b"),
            edge("a", "c"),
            edge("b", "b1"),
            edge("b", "b2"),
            edge("b1", "j"),
            edge("b2", "j"),
            edge("c", "j"),
            edge("j", "end"),
        ],
    )
    index = BranchIndex(graph)
    assert set(index.branches) == {
        ("a:source", "b"),
        ("a:source", "c"),
        ("b:source", "b1"),
        ("b:source", "b2"),
    }
    assert index.branches[("a:source", "b")].members == {"b", "b1", "b2"}
    inner = index.innermost("b1")
    assert inner is not None
    assert (inner.parallel_id, inner.parent) == ("b:source", ("a:source", "b"))
    assert index.innermost("j") is None
