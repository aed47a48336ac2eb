"""Datasets over the tenant API: create, read, list, delete (with its event)."""

from __future__ import annotations

from typing import Any

import pytest

from relay.events.payloads import DatasetDeleted
from relay.models import AppDatasetJoin, Dataset, Document
from tests.integration.test_api_support import Api, TenantCredentials, captured_events


def _create(api: Api, tenant: TenantCredentials, **body: Any) -> dict[str, Any]:
    created: dict[str, Any] = api.ok(
        "POST", "/v1/datasets", tenant, 201, json={"name": "kb", **body}
    )
    return created


def test_create_get_and_list(api: Api, tenant: TenantCredentials) -> None:
    dataset = _create(api, tenant, name="Handbook", description="HR docs")
    assert dataset["name"] == "Handbook"
    assert dataset["description"] == "HR docs"
    assert dataset["document_count"] == 0
    assert dataset["status"] == "normal"
    assert api.rows(Dataset, id=dataset["id"])[0].tenant_id == tenant.id

    api.ok(
        "POST",
        f"/v1/datasets/{dataset['id']}/documents",
        tenant,
        201,
        json={"name": "a", "content": "hello world"},
    )
    fetched = api.ok("GET", f"/v1/datasets/{dataset['id']}", tenant)
    assert fetched["document_count"] == 1
    listed = api.ok("GET", "/v1/datasets", tenant)
    assert [d["id"] for d in listed["data"]] == [dataset["id"]]
    assert listed["data"][0]["document_count"] == 1


def test_list_pages(api: Api, tenant: TenantCredentials) -> None:
    ids = [_create(api, tenant, name=f"kb{i}")["id"] for i in range(3)]
    page = api.ok("GET", "/v1/datasets?limit=1&offset=1", tenant)
    assert [d["id"] for d in page["data"]] == [ids[1]]
    assert (page["total"], page["has_more"]) == (3, True)
    for query in ["limit=0", "limit=1000", "offset=-5", "limit="]:
        response = api.call("GET", f"/v1/datasets?{query}", tenant)
        assert response.status_code == 400, query
        assert response.json["code"] == "invalid_input"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x" * 256}, "name"),
        ({"name": "kb", "description": 5}, "description"),
        ({"name": "kb", "description": "x" * 10_001}, "description"),
        ({"name": "kb", "indexing_technique": "economy"}, "indexing_technique"),
    ],
)
def test_bad_input_is_a_400(
    api: Api, tenant: TenantCredentials, body: dict[str, Any], field: str
) -> None:
    response = api.call("POST", "/v1/datasets", tenant, json=body)
    assert response.status_code == 400
    assert response.json["code"] == "invalid_input"
    assert [d["field"] for d in response.json["details"]] == [field]
    assert api.rows(Dataset) == []


def test_malformed_json_is_a_400(api: Api, tenant: TenantCredentials) -> None:
    response = api.call(
        "POST", "/v1/datasets", tenant, data="{name: kb}", content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json["code"] == "bad_request"
    assert "malformed JSON" in response.json["message"]


def test_unknown_dataset_is_404(api: Api, tenant: TenantCredentials) -> None:
    for method in ["GET", "DELETE"]:
        response = api.call(method, "/v1/datasets/missing", tenant)
        assert response.status_code == 404
        assert response.json == {
            "code": "not_found",
            "message": "dataset not found",
            "details": None,
        }


def test_delete_removes_dataset_and_emits_event(api: Api, tenant: TenantCredentials) -> None:
    dataset = _create(api, tenant)
    other = _create(api, tenant, name="other")
    for target in (dataset, other):
        api.ok(
            "POST",
            f"/v1/datasets/{target['id']}/documents",
            tenant,
            201,
            json={"name": "doc", "content": "some text"},
        )
    app = api.ok("POST", "/v1/apps", tenant, 201, json={"name": "bot", "mode": "chat"})
    api.add(AppDatasetJoin(tenant_id=tenant.id, app_id=app["id"], dataset_id=dataset["id"]))

    with captured_events(api.runtime) as events:
        response = api.call("DELETE", f"/v1/datasets/{dataset['id']}", tenant)
    assert response.status_code == 204
    assert events == [
        ("dataset_was_deleted", DatasetDeleted(tenant_id=tenant.id, dataset_id=dataset["id"]))
    ]
    assert api.call("GET", f"/v1/datasets/{dataset['id']}", tenant).status_code == 404
    assert api.call("DELETE", f"/v1/datasets/{dataset['id']}", tenant).status_code == 404
    assert api.rows(AppDatasetJoin, dataset_id=dataset["id"]) == []
    assert [d.id for d in api.rows(Dataset)] == [other["id"]]
    assert [d.dataset_id for d in api.rows(Document)] == [other["id"]]
    assert api.ok("GET", f"/v1/apps/{app['id']}", tenant)["id"] == app["id"]
