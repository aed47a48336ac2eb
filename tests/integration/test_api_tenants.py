"""Tenant management over the admin API, API keys, and the ``relay tenants`` CLI."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from click.testing import CliRunner

from relay.cli import main
from relay.config import Settings
from relay.events.payloads import TenantCreated, TenantUpdated
from relay.models import ApiKey, Tenant
from tests.integration.test_api_support import ADMIN, Api, captured_events

ADMIN_ROUTES = [
    ("POST", "/v1/tenants"),
    ("GET", "/v1/tenants"),
    ("GET", "/v1/tenants/x"),
    ("PATCH", "/v1/tenants/x"),
    ("POST", "/v1/tenants/x/api-keys"),
    ("GET", "/v1/tenants/x/api-keys"),
    ("DELETE", "/v1/tenants/x/api-keys/y"),
]


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
def test_admin_routes_are_disabled_without_a_configured_token(
    client: Any, method: str, path: str
) -> None:
    response = client.open(path, method=method, json={}, headers=ADMIN)
    assert response.status_code == 403
    assert response.json["code"] == "admin_disabled"
    assert "RELAY_API_ADMIN_TOKEN" in response.json["message"]


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic dGVzdA==", "Bearer "])
def test_admin_routes_need_the_admin_token(
    api: Api, method: str, path: str, header: str | None
) -> None:
    headers = {"Authorization": header} if header else {}
    response = api.client.open(path, method=method, json={}, headers=headers)
    assert response.status_code == 401
    assert response.json["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_tenant_api_key_is_not_an_admin_token(api: Api) -> None:
    tenant = api.create_tenant()
    assert api.call("GET", "/v1/tenants", tenant).status_code == 401


def test_create_update_and_list_tenants_emit_events(api: Api) -> None:
    with captured_events(api.runtime) as events:
        created = api.client.post(
            "/v1/tenants", json={"name": "  Acme  ", "plan": "team"}, headers=ADMIN
        )
        assert created.status_code == 201
        tenant = created.json
        assert tenant["name"] == "Acme"
        assert tenant["plan"] == "team"
        assert tenant["status"] == "normal"

        updated = api.client.patch(
            f"/v1/tenants/{tenant['id']}", json={"plan": "enterprise"}, headers=ADMIN
        )
        assert updated.status_code == 200
        assert updated.json["plan"] == "enterprise"
        # Same plan again: nothing changed, so no event.
        same = api.client.patch(
            f"/v1/tenants/{tenant['id']}", json={"plan": "enterprise"}, headers=ADMIN
        )
        assert same.status_code == 200

    assert events == [
        ("tenant_was_created", TenantCreated(tenant_id=tenant["id"], plan="team")),
        (
            "tenant_was_updated",
            TenantUpdated(tenant_id=tenant["id"], plan="enterprise", previous_plan="team"),
        ),
    ]
    fetched = api.client.get(f"/v1/tenants/{tenant['id']}", headers=ADMIN)
    assert fetched.json["plan"] == "enterprise"
    listed = api.client.get("/v1/tenants", headers=ADMIN).json
    assert [t["id"] for t in listed["data"]] == [tenant["id"]]
    assert listed["total"] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"plan": "team"}, "name"),
        ({"name": "", "plan": "team"}, "name"),
        ({"name": "x" * 256}, "name"),
        ({"name": "a", "plan": "gold"}, "plan"),
        ({"name": "a", "tenant_id": "t"}, "tenant_id"),
    ],
)
def test_bad_tenant_input_is_a_400_naming_the_field(
    api: Api, body: dict[str, Any], field: str
) -> None:
    response = api.client.post("/v1/tenants", json=body, headers=ADMIN)
    assert response.status_code == 400
    assert response.json["code"] == "invalid_input"
    assert [d["field"] for d in response.json["details"]] == [field]
    assert api.rows(Tenant) == []


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ('{"name": "a",', "application/json"),
        ("[1, 2]", "application/json"),
        ('"acme"', "application/json"),
        (b"\xff\xfe{", "application/json"),
        ('{"name": "a"}', "text/plain"),
    ],
)
def test_malformed_json_is_a_400_bad_request(api: Api, data: Any, content_type: str) -> None:
    response = api.client.post("/v1/tenants", data=data, content_type=content_type, headers=ADMIN)
    assert response.status_code == 400
    assert response.json["code"] == "bad_request"
    assert api.rows(Tenant) == []


def test_unknown_tenant_is_404(api: Api) -> None:
    for method, path, body in [
        ("GET", "/v1/tenants/nope", None),
        ("PATCH", "/v1/tenants/nope", {"plan": "team"}),
        ("POST", "/v1/tenants/nope/api-keys", {"name": "k"}),
        ("GET", "/v1/tenants/nope/api-keys", None),
        ("DELETE", "/v1/tenants/nope/api-keys/k", None),
    ]:
        response = api.client.open(path, method=method, json=body, headers=ADMIN)
        assert response.status_code == 404, (method, path)
        assert response.json["code"] == "not_found"


def test_api_keys_are_shown_once_and_stored_hashed(api: Api) -> None:
    tenant = api.create_tenant()
    assert tenant.key.startswith("relay-")
    assert len(tenant.key) == len("relay-") + 43
    (row,) = api.rows(ApiKey, tenant_id=tenant.id)
    assert row.key_hash == hashlib.sha256(tenant.key.encode()).hexdigest()
    assert tenant.key.startswith(row.key_prefix)
    assert tenant.key not in {row.key_hash, row.key_prefix, row.name}

    listed = api.client.get(f"/v1/tenants/{tenant.id}/api-keys", headers=ADMIN).json
    assert [k["id"] for k in listed["data"]] == [tenant.key_id]
    assert "key" not in listed["data"][0]
    assert tenant.key not in str(listed)

    assert api.call("GET", "/v1/apps", tenant).status_code == 200
    assert api.rows(ApiKey, id=tenant.key_id)[0].last_used_at is not None


def test_revoked_and_unknown_keys_are_401(api: Api) -> None:
    tenant = api.create_tenant()
    other = api.create_tenant("other")
    assert api.call("GET", "/v1/apps", tenant).status_code == 200

    # Another tenant's key cannot be revoked through this tenant's path.
    cross = api.client.delete(f"/v1/tenants/{tenant.id}/api-keys/{other.key_id}", headers=ADMIN)
    assert cross.status_code == 404
    assert api.call("GET", "/v1/apps", other).status_code == 200

    path = f"/v1/tenants/{tenant.id}/api-keys/{tenant.key_id}"
    assert api.client.delete(path, headers=ADMIN).status_code == 204
    assert api.client.delete(path, headers=ADMIN).status_code == 204, "revoking is idempotent"
    assert api.rows(ApiKey, id=tenant.key_id)[0].revoked_at is not None

    for headers in [
        tenant.headers,
        {"Authorization": "Bearer relay-unknown"},
        {"Authorization": "Bearer not-a-relay-key"},
        {"Authorization": f"Basic {tenant.key}"},
        {},
    ]:
        response = api.client.get("/v1/apps", headers=headers)
        assert response.status_code == 401, headers
        assert response.json["code"] == "unauthorized"
        assert response.json["message"] == "missing or invalid API key"


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=101", "limit=abc", "offset=-1", "offset=x", "limit=1.5"]
)
def test_bad_pagination_is_a_400(api: Api, query: str) -> None:
    response = api.client.get(f"/v1/tenants?{query}", headers=ADMIN)
    assert response.status_code == 400
    assert response.json["code"] == "invalid_input"


def test_tenant_list_pages(api: Api) -> None:
    ids = [api.create_tenant(f"t{i}").id for i in range(3)]
    first = api.client.get("/v1/tenants?limit=2", headers=ADMIN).json
    second = api.client.get("/v1/tenants?limit=2&offset=2", headers=ADMIN).json
    assert (first["total"], first["has_more"], len(first["data"])) == (3, True, 2)
    assert (second["has_more"], len(second["data"])) == (False, 1)
    assert sorted(t["id"] for t in first["data"] + second["data"]) == sorted(ids)
    assert api.client.get("/v1/tenants?limit=100&offset=50", headers=ADMIN).json["data"] == []


def test_cli_creates_a_tenant_with_a_working_key(api: Api, settings: Settings) -> None:
    env = {
        "RELAY_DATABASE_URL": settings.database_url,
        "RELAY_REDIS_URL": settings.redis.url or "",
        "RELAY_VAR_DIR": str(settings.var_dir),
        "RELAY_LOG_JSON_FORMAT": "false",
    }
    runner = CliRunner()
    created = runner.invoke(
        main, ["tenants", "create", "--name", "cli co", "--plan", "team", "--json"], env=env
    )
    assert created.exit_code == 0, created.output
    import json

    answer = json.loads(created.stdout.strip().splitlines()[-1])
    assert answer["plan"] == "team"
    key = answer["api_key"]
    assert api.client.get("/v1/apps", headers={"Authorization": f"Bearer {key}"}).status_code == 200

    listed = runner.invoke(main, ["tenants", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    assert answer["tenant_id"] in listed.stdout
    assert "cli co" in listed.stdout

    bad = runner.invoke(main, ["tenants", "create", "--name", "x", "--plan", "gold"], env=env)
    assert bad.exit_code != 0
    assert "unknown plan" in bad.output
