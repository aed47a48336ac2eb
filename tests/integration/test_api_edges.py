"""Malformed requests answer a JSON 4xx with a machine-readable code and change nothing."""

from __future__ import annotations

import io
from typing import Any

import pytest

from relay.models import App, Dataset, Document
from tests.integration.test_api_support import Api, TenantCredentials


@pytest.fixture
def tenant(api: Api) -> TenantCredentials:
    return api.create_tenant("edges")


def _deep(levels: int) -> bytes:
    return b'{"name": "x", "mode": "chat", "extra": ' + b"[" * levels + b"]" * levels + b"}"


@pytest.mark.parametrize(
    ("data", "code", "fragment"),
    [
        (_deep(100_000), "body_too_deep", "nested too deeply"),  # RecursionError in the parser
        (_deep(200), "body_too_deep", "nested too deeply"),  # parses, but too deep to walk
        (b'{"name": "a\\u0000b", "mode": "chat"}', "nul_character", "NUL"),
        (b'{"na\\u0000me": "a", "mode": "chat"}', "nul_character", "NUL"),
        (b'{"name": "\\ud800", "mode": "chat"}', "invalid_unicode", "surrogate"),
        (b'{"name": "\xff\xfe", "mode": "chat"}', "bad_request", "malformed JSON"),
        (b'{"name": "a", "mode": "chat", "n": 1e999}', "number_out_of_range", "finite"),
        (b'{"name": "a", "mode": "chat", "n": NaN}', "number_out_of_range", "NaN"),
        (b'{"name": "a", "mode": "chat", "n": -Infinity}', "number_out_of_range", "Infinity"),
        (b'{"name": "a", "mode": "chat", "n": 1' + b"0" * 30 + b"}", "number_out_of_range", "64"),
        (b'{"name": "a", "n": 1' + b"0" * 5000 + b"}", "bad_request", "malformed JSON"),
        (b'["name", "mode"]', "bad_request", "must be an object"),
        (b'"app"', "bad_request", "must be an object"),
        (b"", "invalid_input", "validation"),
    ],
)
def test_malformed_bodies_are_400_and_create_nothing(
    api: Api, tenant: TenantCredentials, data: bytes, code: str, fragment: str
) -> None:
    response = api.call(
        "POST", "/v1/apps", tenant, data=data, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert response.json["code"] == code
    assert fragment in response.json["message"] or fragment in str(response.json["details"])
    assert set(response.json) == {"code", "message", "details"}
    assert api.rows(App) == []


def test_nesting_up_to_the_limit_is_accepted(api: Api, tenant: TenantCredentials) -> None:
    inputs: dict[str, Any] = {}
    node = inputs
    for _ in range(55):  # plus the graph's own levels: just under MAX_DEPTH
        node["k"] = {}
        node = node["k"]
    graph = {"nodes": [{"id": "start", "data": {"type": "start", "deep": inputs}}], "edges": []}
    app = api.ok("POST", "/v1/apps", tenant, 201, json={"name": "deep", "mode": "workflow"})
    api.ok("PUT", f"/v1/apps/{app['id']}/workflows/draft", tenant, json={"graph": graph})


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/v1/apps/a%00b", "nul_character"),
        ("/v1/apps?page=1%00", "nul_character"),
        ("/v1/apps?li%00mit=1", "nul_character"),
        ("/v1/apps/%ED%A0%80", "invalid_unicode"),
    ],
)
def test_nul_and_invalid_text_in_paths_and_queries(
    api: Api, tenant: TenantCredentials, path: str, code: str
) -> None:
    response = api.call("GET", path, tenant)
    assert response.status_code in {400, 404}, response.get_data(as_text=True)
    assert response.is_json
    if response.status_code == 400:
        assert response.json["code"] == code


def test_nul_in_uploads_is_refused(api: Api, tenant: TenantCredentials) -> None:
    dataset = api.ok("POST", "/v1/datasets", tenant, 201, json={"name": "kb"})
    path = f"/v1/datasets/{dataset['id']}/documents"
    for form in (
        {"file": (io.BytesIO(b"hello\x00world"), "a.txt")},
        {"file": (io.BytesIO(b"hello"), "a\x00.txt")},
        {"file": (io.BytesIO(b"hello"), "a.txt"), "name": "x\x00y"},
    ):
        response = api.call("POST", path, tenant, data=form, content_type="multipart/form-data")
        assert response.status_code == 400, response.json
        assert response.json["code"] == "nul_character"
    as_json = api.call("POST", path, tenant, json={"name": "n", "content": "a\x00b"})
    assert as_json.status_code == 400
    assert as_json.json["code"] == "nul_character"
    assert api.rows(Document) == []
    assert len(api.rows(Dataset)) == 1


def test_unknown_method_is_405_with_allow_and_json(api: Api, tenant: TenantCredentials) -> None:
    response = api.call("PATCH", "/v1/apps", tenant, json={})
    assert response.status_code == 405
    assert response.is_json
    assert response.json["code"] == "method_not_allowed"
    allowed = {m.strip() for m in response.headers["Allow"].split(",")}
    assert {"GET", "POST"} <= allowed
    assert "PATCH" not in allowed
    anonymous = api.call("DELETE", "/v1/ping-task")
    assert anonymous.status_code == 405
    assert "POST" in anonymous.headers["Allow"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/nowhere"), ("POST", "/v1/nowhere"), ("GET", "/v1/apps/x/y/z"), ("GET", "/v2")],
)
def test_every_error_body_is_json(api: Api, method: str, path: str) -> None:
    response = api.call(method, path)
    assert response.status_code == 404
    assert response.is_json
    assert response.json["code"] == "not_found"


def test_too_large_bodies_are_json(api: Api, tenant: TenantCredentials) -> None:
    response = api.call(
        "POST",
        "/v1/apps",
        tenant,
        data=b"{" + b" " * (17 * 1024 * 1024) + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.is_json
