"""The variable pool: selectors, system variables, templates, overlays, snapshots."""

from __future__ import annotations

from relay.workflow import SystemVariables, VariablePool
from relay.workflow.variables import template_references, to_text


def test_selectors_system_variables_and_nesting() -> None:
    pool = VariablePool(
        system=SystemVariables(query="hi", user_id="u1", app_id="a1", workflow_run_id="r1"),
        environment={"api": "k"},
        conversation={"token": ""},
    )
    pool.add_outputs("start", {"file": {"size": 42, "name": "x.csv"}, "n": 3})
    assert pool.get(["sys", "query"]) == "hi"
    assert pool.get(["sys", "workflow_run_id"]) == "r1"
    assert pool.get(["env", "api"]) == "k"
    assert pool.get(["start", "file", "size"]) == 42
    assert pool.get(["start", "missing"]) is None
    assert pool.has(["conversation", "token"])
    assert not pool.has(["start", "missing"])


def test_render_references() -> None:
    pool = VariablePool(system={"query": "q?"})
    pool.add_outputs("n1", {"text": "hello", "data": {"a": [1, "二"]}, "flag": True, "none": None})
    text = "{{#n1.text#}} / {{#n1.data#}} / {{#sys.query#}} / {{#n1.flag#}} / [{{#n1.none#}}]"
    assert pool.render(text) == 'hello / {"a": [1, "二"]} / q? / true / []'
    assert pool.render("{{#context#}} stays") == "{{#context#}} stays"
    assert template_references("a {{#x.y.z#}} b {{#sys.query#}}") == [
        ("x", "y", "z"),
        ("sys", "query"),
    ]
    assert to_text(3.5) == "3.5"


def test_overlay_keeps_item_values_local_but_writes_conversation_through() -> None:
    root = VariablePool(conversation={"count": 0})
    root.add_outputs("outer", {"v": 1})
    child = root.child()
    child.add(("it", "item"), "x")
    child.add(("conversation", "count"), 5)
    assert child.get(["outer", "v"]) == 1
    assert child.get(["it", "item"]) == "x"
    assert root.get(["it", "item"]) is None
    assert root.conversation_variables() == {"count": 5}


def test_snapshot_round_trip() -> None:
    pool = VariablePool(system=SystemVariables(query="q"), user_inputs={"a": 1})
    pool.add_outputs("n", {"v": [1, 2]})
    copy = VariablePool.from_dict(pool.to_dict())
    assert copy.get(["n", "v"]) == [1, 2]
    assert copy.get(["sys", "query"]) == "q"
    assert copy.user_inputs == {"a": 1}
