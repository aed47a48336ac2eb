"""App API keys for the Dify-compatible Service API (``/dify/v1``): issue, list, revoke.

A tenant manages the keys of its own apps (``/v1/apps/<app_id>/api-keys``, tenant key); the
operator manages any tenant's (``/v1/tenants/<tenant_id>/apps/<app_id>/api-keys``, admin token).
The key itself appears only in the answer that issues it.
"""

from __future__ import annotations

from flask import Blueprint, Response
from pydantic import BaseModel, ConfigDict

from relay.api.auth import current_runtime, require_admin, tenant_id
from relay.api.body import Name, no_content, parse_body, parse_query, respond
from relay.api.openapi import TENANT, documented
from relay.services.app_keys import AppKeyPage, AppKeyService, IssuedAppKey
from relay.services.pagination import PageParams

app_keys = Blueprint("app_keys", __name__)
admin_app_keys = Blueprint("admin_app_keys", __name__)
admin_app_keys.before_request(require_admin)

_TAGS = ("app keys",)


class AppKeyCreate(BaseModel):
    """A new app key."""

    model_config = ConfigDict(extra="forbid")

    name: Name = "Service API"


def _service() -> AppKeyService:
    return AppKeyService(current_runtime())


@app_keys.post("/apps/<app_id>/api-keys")
@documented(tags=_TAGS, security=TENANT, json=AppKeyCreate, ok=(201, IssuedAppKey), errors=(404,))
def issue_app_key(app_id: str) -> tuple[Response, int]:
    """Issue a key for the app's Service API (``/dify/v1``); the key is shown this once."""
    body = parse_body(AppKeyCreate)
    return respond(_service().issue(tenant_id(), app_id, body.name), 201)


@app_keys.get("/apps/<app_id>/api-keys")
@documented(tags=_TAGS, security=TENANT, query=PageParams, ok=(200, AppKeyPage), errors=(404,))
def list_app_keys(app_id: str) -> tuple[Response, int]:
    """The app's keys, newest first (revoked ones included; never the keys themselves)."""
    return respond(_service().list_keys(tenant_id(), app_id, parse_query(PageParams)))


@app_keys.delete("/apps/<app_id>/api-keys/<key_id>")
@documented(tags=_TAGS, security=TENANT, ok=(204, None), errors=(404,))
def revoke_app_key(app_id: str, key_id: str) -> tuple[Response, int]:
    """Revoke the key at once."""
    _service().revoke(tenant_id(), app_id, key_id)
    return no_content()


@admin_app_keys.post("/tenants/<tenant>/apps/<app_id>/api-keys")
def admin_issue_app_key(tenant: str, app_id: str) -> tuple[Response, int]:
    """Issue a key for a tenant's app (admin)."""
    body = parse_body(AppKeyCreate)
    return respond(_service().issue(tenant, app_id, body.name), 201)


@admin_app_keys.get("/tenants/<tenant>/apps/<app_id>/api-keys")
def admin_list_app_keys(tenant: str, app_id: str) -> tuple[Response, int]:
    """A tenant's app's keys (admin)."""
    return respond(_service().list_keys(tenant, app_id, parse_query(PageParams)))


@admin_app_keys.delete("/tenants/<tenant>/apps/<app_id>/api-keys/<key_id>")
def admin_revoke_app_key(tenant: str, app_id: str, key_id: str) -> tuple[Response, int]:
    """Revoke a tenant's app's key (admin)."""
    _service().revoke(tenant, app_id, key_id)
    return no_content()
