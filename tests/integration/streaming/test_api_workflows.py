"""The run endpoints refuse bad requests with a clear 4xx and change nothing."""

from __future__ import annotations

from typing import Any

from relay.models import App, WorkflowRun
from tests.integration.streaming.support import chat_graph, workflow_graph
from tests.integration.test_api_support import Api, TenantCredentials


def _app(api: Api, tenant: TenantCredentials, mode: str, graph: dict[str, Any] | None) -> str:
    app_id = str(api.ok("POST", "/v1/apps", tenant, 201, json={"name": "a", "mode": mode})["id"])
    if graph is not None:
        api.ok("PUT", f"/v1/apps/{app_id}/workflows/draft", tenant, json={"graph": graph})
        api.ok("POST", f"/v1/apps/{app_id}/workflows/publish", tenant)
    return app_id


def _run(api: Api, tenant: TenantCredentials, **body: object) -> tuple[int, dict[str, Any]]:
    response = api.call("POST", "/v1/workflows/run", tenant, json={"user": "u", **body})
    return response.status_code, response.json


def test_bad_run_requests_get_clear_errors_and_create_nothing(
    api: Api, tenant: TenantCredentials
) -> None:
    workflow = _app(api, tenant, "workflow", workflow_graph())
    chat = _app(api, tenant, "advanced-chat", chat_graph())
    unpublished = _app(api, tenant, "workflow", None)
    # A graph that cannot run is refused when saved (see test_api_validation); one published
    # before that check existed is refused when it is run.
    broken = _app(api, tenant, "workflow", None)
    with api.runtime.db.transaction() as session:
        row = session.get(App, broken)
        assert row is not None
        row.published_workflow = {"nodes": [{"id": "x", "data": {"type": "nope"}}], "edges": []}

    assert _run(api, tenant, app_id="missing")[0] == 404
    assert _run(api, tenant, app_id=chat)[1]["code"] == "app_mode_not_supported"
    assert _run(api, tenant, app_id=unpublished)[1]["code"] == "workflow_not_published"
    assert _run(api, tenant, app_id=broken)[1]["code"] == "invalid_workflow"
    status, body = _run(api, tenant, app_id=workflow, response_mode="eventually")
    assert (status, body["code"]) == (400, "invalid_input")
    assert (
        api.call("POST", "/v1/workflows/run", tenant, json={"app_id": workflow}).status_code == 400
    )
    chat_to_workflow = api.call(
        "POST", "/v1/chat-messages", tenant, json={"app_id": workflow, "query": "q", "user": "u"}
    )
    assert chat_to_workflow.json["code"] == "app_mode_not_supported"
    unknown_conversation = api.call(
        "POST",
        "/v1/chat-messages",
        tenant,
        json={"app_id": chat, "query": "q", "user": "u", "conversation_id": "nope"},
    )
    assert unknown_conversation.status_code == 404
    assert api.rows(WorkflowRun) == []


def test_unknown_runs_are_not_found_and_unauthenticated_calls_refused(
    api: Api, tenant: TenantCredentials
) -> None:
    for method, path in (
        ("GET", "/v1/workflows/runs/nope?user=u"),
        ("GET", "/v1/workflows/runs/nope/events?user=u"),
    ):
        assert api.call(method, path, tenant).status_code == 404
    assert (
        api.call("POST", "/v1/workflows/runs/nope/stop", tenant, json={"user": "u"}).status_code
        == 404
    )
    assert api.call("GET", "/v1/workflows/runs/nope?user=u").status_code == 401
    assert api.call("GET", "/v1/workflows/runs/nope", tenant).status_code == 400  # user is required
