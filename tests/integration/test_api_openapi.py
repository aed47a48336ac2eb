"""The OpenAPI document covers every API route and matches what the handlers accept."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.integration.test_api_support import Api

# Blueprints whose routes are the documented API (health and metrics are operational).
DOCUMENTED_BLUEPRINTS = ("tenants.", "tenant_api.", "tasks.")


@pytest.fixture
def spec(api: Api) -> dict[str, Any]:
    response = api.client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json
    return document


def _openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def test_every_api_route_is_documented(api: Api, spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.")
    assert spec["info"]["title"] == "relay API"
    missing = []
    for rule in api.app.url_map.iter_rules():
        if not rule.endpoint.startswith(DOCUMENTED_BLUEPRINTS):
            continue
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            operation = spec["paths"].get(_openapi_path(rule.rule), {}).get(method.lower())
            if operation is None:
                missing.append(f"{method} {rule.rule}")
    assert missing == []


def test_security_schemes_are_declared_per_operation(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "A tenant's API key (relay-...)",
    }
    assert schemes["AdminToken"]["scheme"] == "bearer"
    assert spec["paths"]["/v1/apps"]["post"]["security"] == [{"ApiKey": []}]
    assert spec["paths"]["/v1/tenants"]["post"]["security"] == [{"AdminToken": []}]
    get_app = spec["paths"]["/v1/apps/{app_id}"]["get"]
    assert {"200", "400", "401", "404"} <= set(get_app["responses"])


def test_models_are_named_and_use_wire_names(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    assert "AppCreate" in schemas
    assert "model_config" in schemas["AppCreate"]["properties"]
    assert "model_config" in schemas["AppDetail"]["properties"]
    create = spec["paths"]["/v1/apps"]["post"]["requestBody"]["content"]
    assert create["application/json"]["schema"] == {"$ref": "#/components/schemas/AppCreate"}
    upload = spec["paths"]["/v1/datasets/{dataset_id}/documents"]["post"]["requestBody"]
    assert set(upload["content"]) == {"application/json", "multipart/form-data"}
    limit = next(p for p in spec["paths"]["/v1/apps"]["get"]["parameters"] if p["name"] == "limit")
    assert (limit["in"], limit["schema"]["minimum"], limit["schema"]["maximum"]) == (
        "query",
        1,
        100,
    )

    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', str(spec).replace("'", '"')))
    assert refs, "the document references its models"
    assert refs <= set(schemas), sorted(refs - set(schemas))


@pytest.mark.parametrize("page", ["/docs", "/docs/redoc"])
def test_docs_pages_load_the_document(api: Api, page: str) -> None:
    response = api.client.get(page)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert "/openapi.json" in response.get_data(as_text=True)
