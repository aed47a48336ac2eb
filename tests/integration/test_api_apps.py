"""Apps over the tenant API: CRUD, model config, draft and published workflows, events."""

from __future__ import annotations

from typing import Any

import pytest

from relay.events.payloads import (
    AppCreated,
    AppDeleted,
    AppDraftWorkflowSynced,
    AppModelConfigUpdated,
    AppPublishedWorkflowUpdated,
)
from relay.models import App, AppDatasetJoin, Dataset, InstalledApp, Site
from tests.integration.test_api_support import Api, TenantCredentials, captured_events

GRAPH = {
    "nodes": [{"id": "start", "data": {"type": "start"}}, {"id": "end", "data": {"type": "end"}}],
    "edges": [{"id": "e1", "source": "start", "target": "end"}],
}


def _create(api: Api, tenant: TenantCredentials, **body: Any) -> dict[str, Any]:
    body = {"name": "bot", "mode": "chat", **body}
    created: dict[str, Any] = api.ok("POST", "/v1/apps", tenant, 201, json=body)
    return created


def test_create_get_and_list_apps(api: Api, tenant: TenantCredentials) -> None:
    config = {"provider": "openai", "model": "gpt-4o", "temperature": 0.2}
    with captured_events(api.runtime) as events:
        app = _create(api, tenant, name=" Support bot ", model_config=config)
    assert app["name"] == "Support bot"
    assert app["mode"] == "chat"
    assert app["model_config"] == config
    assert app["draft_workflow"] is None
    # Created with a model config: the config's datasets are linked in the same transaction.
    assert events == [
        (
            "app_was_created",
            AppCreated(tenant_id=tenant.id, app_id=app["id"], mode="chat", name="Support bot"),
        ),
        (
            "app_model_config_was_updated",
            AppModelConfigUpdated(
                tenant_id=tenant.id, app_id=app["id"], model_config=app["model_config"]
            ),
        ),
    ]
    (row,) = api.rows(App, id=app["id"])
    assert row.tenant_id == tenant.id

    assert api.ok("GET", f"/v1/apps/{app['id']}", tenant) == app
    listed = api.ok("GET", "/v1/apps", tenant)
    assert [a["id"] for a in listed["data"]] == [app["id"]]
    assert "model_config" not in listed["data"][0], "lists are summaries"
    assert listed["data"][0]["has_draft_workflow"] is False


def test_list_pages_newest_first(api: Api, tenant: TenantCredentials) -> None:
    ids = [_create(api, tenant, name=f"app {i}")["id"] for i in range(5)]
    first = api.ok("GET", "/v1/apps?limit=2", tenant)
    rest = api.ok("GET", "/v1/apps?limit=100&offset=2", tenant)
    assert first["data"][0]["id"] == ids[-1]
    assert (first["limit"], first["offset"], first["total"], first["has_more"]) == (2, 0, 5, True)
    assert rest["has_more"] is False
    assert [a["id"] for a in first["data"] + rest["data"]] == ids[::-1]
    assert api.ok("GET", "/v1/apps", tenant)["limit"] == 20


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=-3", "limit=ten", "offset=-1"])
def test_bad_pagination_is_a_400(api: Api, tenant: TenantCredentials, query: str) -> None:
    response = api.call("GET", f"/v1/apps?{query}", tenant)
    assert response.status_code == 400
    assert response.json["code"] == "invalid_input"
    assert response.json["details"][0]["field"] in {"limit", "offset"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"mode": "chat"}, "name"),
        ({"name": "   ", "mode": "chat"}, "name"),
        ({"name": "a"}, "mode"),
        ({"name": "a", "mode": "robot"}, "mode"),
        ({"name": "a", "mode": "chat", "model_config": "gpt"}, "model_config"),
        ({"name": "a", "mode": "chat", "tenant_id": "someone-else"}, "tenant_id"),
    ],
)
def test_bad_app_input_is_a_400_naming_the_field(
    api: Api, tenant: TenantCredentials, body: dict[str, Any], field: str
) -> None:
    response = api.call("POST", "/v1/apps", tenant, json=body)
    assert response.status_code == 400
    assert response.json["code"] == "invalid_input"
    assert [d["field"] for d in response.json["details"]] == [field]
    assert api.rows(App) == []


def test_malformed_json_is_a_400(api: Api, tenant: TenantCredentials) -> None:
    for data in ['{"name": ', "null", "[]"]:
        response = api.call("POST", "/v1/apps", tenant, data=data, content_type="application/json")
        assert response.status_code == 400, data
        assert response.json["code"] == "bad_request"
    assert api.rows(App) == []


def test_unknown_app_is_404(api: Api, tenant: TenantCredentials) -> None:
    calls: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", "", None),
        ("DELETE", "", None),
        ("PUT", "/model-config", {"model_config": {}}),
        ("PUT", "/workflows/draft", {"graph": GRAPH}),
        ("POST", "/workflows/publish", None),
    ]
    for method, suffix, body in calls:
        response = api.call(method, f"/v1/apps/missing{suffix}", tenant, json=body)
        assert response.status_code == 404, (method, suffix)
        assert response.json == {"code": "not_found", "message": "app not found", "details": None}


def test_model_config_update_emits_its_event(api: Api, tenant: TenantCredentials) -> None:
    app = _create(api, tenant)
    config = {"provider": "anthropic", "model": "claude"}
    with captured_events(api.runtime) as events:
        updated = api.ok(
            "PUT", f"/v1/apps/{app['id']}/model-config", tenant, json={"model_config": config}
        )
    assert updated["model_config"] == config
    assert events == [
        (
            "app_model_config_was_updated",
            AppModelConfigUpdated(tenant_id=tenant.id, app_id=app["id"], model_config=config),
        )
    ]
    bad = api.call("PUT", f"/v1/apps/{app['id']}/model-config", tenant, json={"model_config": 1})
    assert bad.status_code == 400
    assert api.rows(App, id=app["id"])[0].model_config == config


def test_publish_needs_a_draft_then_publishes_it(api: Api, tenant: TenantCredentials) -> None:
    app = _create(api, tenant, mode="workflow")
    publish = f"/v1/apps/{app['id']}/workflows/publish"

    no_draft = api.call("POST", publish, tenant)
    assert no_draft.status_code == 409
    assert no_draft.json["code"] == "no_draft"

    with captured_events(api.runtime) as events:
        synced = api.ok(
            "PUT", f"/v1/apps/{app['id']}/workflows/draft", tenant, json={"graph": GRAPH}
        )
        assert synced["draft_workflow"] == GRAPH
        assert synced["published_workflow"] is None
        published = api.ok("POST", publish, tenant)
    assert published["published_workflow"] == GRAPH
    assert published["has_published_workflow"] is True
    assert events == [
        ("app_draft_workflow_was_synced", AppDraftWorkflowSynced(tenant.id, app["id"])),
        (
            "app_published_workflow_was_updated",
            AppPublishedWorkflowUpdated(tenant_id=tenant.id, app_id=app["id"], graph=GRAPH),
        ),
    ]
    assert api.call("POST", publish, tenant, json={"force": True}).status_code == 400


@pytest.mark.parametrize(
    "body",
    [{}, {"graph": {"nodes": []}}, {"graph": {"nodes": [], "edges": "x"}}, {"graph": [1]}],
)
def test_bad_draft_is_a_400(api: Api, tenant: TenantCredentials, body: dict[str, Any]) -> None:
    app = _create(api, tenant, mode="advanced-chat")
    response = api.call("PUT", f"/v1/apps/{app['id']}/workflows/draft", tenant, json=body)
    assert response.status_code == 400
    assert response.json["code"] == "invalid_input"
    assert api.rows(App, id=app["id"])[0].draft_workflow is None


def test_chat_apps_have_no_workflow(api: Api, tenant: TenantCredentials) -> None:
    app = _create(api, tenant, mode="chat")
    response = api.call(
        "PUT", f"/v1/apps/{app['id']}/workflows/draft", tenant, json={"graph": GRAPH}
    )
    assert response.status_code == 409
    assert response.json["code"] == "workflow_not_supported"


def test_delete_removes_the_app_and_what_hangs_on_it(api: Api, tenant: TenantCredentials) -> None:
    app = _create(api, tenant)
    keep = _create(api, tenant, name="keep")
    dataset = api.ok("POST", "/v1/datasets", tenant, 201, json={"name": "kb"})
    # What hangs on an app (the app_was_created handler may have made some of it already).
    if not api.rows(Site, app_id=app["id"]):
        api.add(Site(tenant_id=tenant.id, app_id=app["id"], code="abc123", title="bot"))
    if not api.rows(InstalledApp, app_id=app["id"]):
        api.add(InstalledApp(tenant_id=tenant.id, app_id=app["id"]))
    api.add(
        AppDatasetJoin(tenant_id=tenant.id, app_id=app["id"], dataset_id=dataset["id"]),
        AppDatasetJoin(tenant_id=tenant.id, app_id=keep["id"], dataset_id=dataset["id"]),
    )
    with captured_events(api.runtime) as events:
        response = api.call("DELETE", f"/v1/apps/{app['id']}", tenant)
    assert response.status_code == 204
    assert response.data == b""
    assert events == [("app_was_deleted", AppDeleted(tenant_id=tenant.id, app_id=app["id"]))]
    assert api.call("GET", f"/v1/apps/{app['id']}", tenant).status_code == 404
    assert api.call("DELETE", f"/v1/apps/{app['id']}", tenant).status_code == 404
    assert api.rows(Site, app_id=app["id"]) == []
    assert api.rows(InstalledApp, app_id=app["id"]) == []
    assert [j.app_id for j in api.rows(AppDatasetJoin)] == [keep["id"]]
    assert len(api.rows(Dataset)) == 1
    assert [a.id for a in api.rows(App)] == [keep["id"]]
