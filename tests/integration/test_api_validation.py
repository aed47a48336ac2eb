"""Mistakes are refused where they are made: saving a draft, publishing, starting a run.

Each refusal is a 400 naming the node and field (graphs) or the variable (run inputs), and
changes nothing.
"""

from __future__ import annotations

import itertools
from typing import Any

from relay.models import App, WorkflowRun
from tests.integration.streaming.support import edge, llm, node, workflow_graph
from tests.integration.test_api_support import Api, TenantCredentials


def _app(api: Api, tenant: TenantCredentials) -> str:
    body = {"name": "a", "mode": "workflow"}
    return str(api.ok("POST", "/v1/apps", tenant, 201, json=body)["id"])


def _save(api: Api, tenant: TenantCredentials, app_id: str, graph: dict[str, Any]) -> Any:
    return api.call("PUT", f"/v1/apps/{app_id}/workflows/draft", tenant, json={"graph": graph})


def _problems(response: Any) -> list[tuple[str | None, str | None]]:
    assert response.status_code == 400, response.json
    assert response.json["code"] == "invalid_workflow"
    return [(p["node_id"], p["field"]) for p in response.json["details"]["problems"]]


def _chain(*nodes: dict[str, Any]) -> dict[str, Any]:
    ids = [n["id"] for n in nodes]
    return {"nodes": list(nodes), "edges": [edge(a, b) for a, b in itertools.pairwise(ids)]}


START = node("start", "start", variables=[{"variable": "topic", "type": "text-input"}])
END = node("end", "end", outputs=[])


def test_a_draft_that_cannot_run_is_refused_naming_node_and_field(
    api: Api, tenant: TenantCredentials
) -> None:
    app_id = _app(api, tenant)

    unknown = _save(api, tenant, app_id, _chain(START, node("t1", "datasource"), END))
    assert _problems(unknown) == [("t1", "type")]
    assert "t1" in unknown.json["message"]

    cycle = _chain(START, llm("a", "x"), llm("b", "y"), END)
    cycle["edges"].append(edge("b", "a"))
    assert _problems(_save(api, tenant, app_id, cycle))[0][1] == "edges"

    dangling = _chain(START, llm("a", "about {{#ghost.text#}}"), END)
    assert _problems(_save(api, tenant, app_id, dangling)) == [("a", "prompt_template[0].text")]

    later = _chain(
        START,
        node("e", "end", outputs=[{"variable": "v", "value_selector": ["after", "text"]}]),
    )
    later["nodes"].append(llm("after", "x"))
    later["edges"].append(edge("e", "after"))
    assert _problems(_save(api, tenant, app_id, later)) == [("e", "outputs[0].value_selector")]

    no_output = _chain(START, llm("a", "about {{#start.topik#}} for {{#start.sys.query#}}"), END)
    refused = _save(api, tenant, app_id, no_output)
    assert _problems(refused) == [("a", "prompt_template[0].text")]
    assert "reads 'start.topik', but node 'start' has no output 'topik'" in refused.json["message"]

    no_model = _chain(START, node("m", "llm", prompt_template=[]), END)
    assert _problems(_save(api, tenant, app_id, no_model)) == [("m", "model")]

    (row,) = api.rows(App, id=app_id)
    assert row.draft_workflow is None, "nothing was saved"
    assert api.ok("PUT", f"/v1/apps/{app_id}/workflows/draft", tenant, json={
        "graph": workflow_graph()
    })["has_draft_workflow"]  # fmt: skip


def test_publishing_checks_the_draft_again(api: Api, tenant: TenantCredentials) -> None:
    app_id = _app(api, tenant)
    with api.runtime.db.transaction() as session:
        row = session.get(App, app_id)
        assert row is not None
        row.draft_workflow = _chain(START, node("x", "datasource"), END)
    refused = api.call("POST", f"/v1/apps/{app_id}/workflows/publish", tenant)
    assert _problems(refused) == [("x", "type")]
    (row,) = api.rows(App, id=app_id)
    assert row.published_workflow is None


def test_a_run_with_missing_or_invalid_inputs_is_refused_naming_the_variable(
    api: Api, tenant: TenantCredentials
) -> None:
    start = node(
        "start",
        "start",
        variables=[
            {"variable": "topic", "type": "text-input", "required": True, "max_length": 5},
            {"variable": "count", "type": "number"},
            {"variable": "tone", "type": "select", "options": ["calm", "loud"]},
        ],
    )
    graph = _chain(start, node("end", "end", outputs=[]))
    app_id = _app(api, tenant)
    api.ok("PUT", f"/v1/apps/{app_id}/workflows/draft", tenant, json={"graph": graph})
    api.ok("POST", f"/v1/apps/{app_id}/workflows/publish", tenant)

    def run(inputs: dict[str, Any]) -> Any:
        body = {"app_id": app_id, "user": "u", "inputs": inputs, "response_mode": "blocking"}
        return api.call("POST", "/v1/workflows/run", tenant, json=body)

    missing = run({})
    assert (missing.status_code, missing.json["code"]) == (400, "invalid_inputs")
    assert [i["variable"] for i in missing.json["details"]["inputs"]] == ["topic"]
    assert "topic" in missing.json["message"]

    wrong = run({"topic": "far too long", "count": "many", "tone": "angry"})
    assert wrong.status_code == 400
    assert [i["variable"] for i in wrong.json["details"]["inputs"]] == ["topic", "count", "tone"]
    assert api.rows(WorkflowRun) == [], "a refused run is not created"
