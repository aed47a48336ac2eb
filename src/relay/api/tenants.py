"""Tenant management (operator only, admin token): tenants and their API keys."""

from __future__ import annotations

from flask import Blueprint, Response
from pydantic import BaseModel, ConfigDict

from relay.api.auth import current_runtime, require_admin
from relay.api.body import Name, no_content, parse_body, parse_query, respond
from relay.api.openapi import ADMIN, documented
from relay.config import Plan
from relay.services.auth_service import ApiKeyPage, AuthService, IssuedApiKey
from relay.services.pagination import PageParams
from relay.services.tenant_service import TenantPage, TenantService, TenantView

tenants = Blueprint("tenants", __name__)
tenants.before_request(require_admin)

_TAGS = ("tenants",)


class TenantCreate(BaseModel):
    """A new tenant."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    plan: Plan = Plan.SANDBOX


class TenantUpdate(BaseModel):
    """A tenant's new plan."""

    model_config = ConfigDict(extra="forbid")

    plan: Plan


class ApiKeyCreate(BaseModel):
    """A new API key."""

    model_config = ConfigDict(extra="forbid")

    name: Name


def _tenants() -> TenantService:
    return TenantService(current_runtime())


def _keys() -> AuthService:
    return AuthService(current_runtime())


@tenants.post("/tenants")
@documented(tags=_TAGS, security=ADMIN, json=TenantCreate, ok=(201, TenantView), errors=(403,))
def create_tenant() -> tuple[Response, int]:
    """Create a tenant."""
    body = parse_body(TenantCreate)
    return respond(_tenants().create(body.name, body.plan), 201)


@tenants.get("/tenants")
@documented(tags=_TAGS, security=ADMIN, query=PageParams, ok=(200, TenantPage), errors=(403,))
def list_tenants() -> tuple[Response, int]:
    """List tenants, newest first."""
    return respond(_tenants().list_tenants(parse_query(PageParams)))


@tenants.get("/tenants/<tenant_id>")
@documented(tags=_TAGS, security=ADMIN, ok=(200, TenantView), errors=(403, 404))
def get_tenant(tenant_id: str) -> tuple[Response, int]:
    """One tenant."""
    return respond(_tenants().get(tenant_id))


@tenants.patch("/tenants/<tenant_id>")
@documented(tags=_TAGS, security=ADMIN, json=TenantUpdate, ok=(200, TenantView), errors=(403, 404))
def update_tenant(tenant_id: str) -> tuple[Response, int]:
    """Change a tenant's plan."""
    body = parse_body(TenantUpdate)
    return respond(_tenants().update_plan(tenant_id, body.plan))


@tenants.post("/tenants/<tenant_id>/api-keys")
@documented(
    tags=_TAGS, security=ADMIN, json=ApiKeyCreate, ok=(201, IssuedApiKey), errors=(403, 404)
)
def create_api_key(tenant_id: str) -> tuple[Response, int]:
    """Issue an API key. The key is in this answer only: store it now."""
    body = parse_body(ApiKeyCreate)
    return respond(_keys().issue_key(tenant_id, body.name), 201)


@tenants.get("/tenants/<tenant_id>/api-keys")
@documented(tags=_TAGS, security=ADMIN, query=PageParams, ok=(200, ApiKeyPage), errors=(403, 404))
def list_api_keys(tenant_id: str) -> tuple[Response, int]:
    """List a tenant's API keys (prefixes only, never the keys)."""
    return respond(_keys().list_keys(tenant_id, parse_query(PageParams)))


@tenants.delete("/tenants/<tenant_id>/api-keys/<key_id>")
@documented(tags=_TAGS, security=ADMIN, ok=(204, None), errors=(403, 404))
def revoke_api_key(tenant_id: str, key_id: str) -> tuple[Response, int]:
    """Revoke an API key; it stops working at once."""
    _keys().revoke_key(tenant_id, key_id)
    return no_content()
