"""Credentials: the operator's admin token and tenants' API keys.

An API key is shown once, when it is issued; only its SHA-256 hex digest is stored, so a leaked
database does not leak usable keys. The tenant a request acts for always comes from its key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict
from sqlalchemy import or_, select, update

from relay.adapters.sql import Database
from relay.config import Settings
from relay.errors import BadRequest, Forbidden, NotFound, Unauthorized
from relay.models import ApiKey, AppApiKey, Tenant, TenantStatus, new_id, utcnow
from relay.runtime import Runtime
from relay.services.pagination import Page, PageParams, paginate

API_KEY_PREFIX = "relay-"
DISPLAY_PREFIX_LENGTH = len(API_KEY_PREFIX) + 6
# last_used_at is informational: write it at most once a minute per key, not on every request.
LAST_USED_RESOLUTION = timedelta(seconds=60)


class AdminDisabled(Forbidden):
    """Admin endpoints are off because no admin token is configured."""

    code = "admin_disabled"


@dataclass(frozen=True)
class TenantPrincipal:
    """Who a request acts for, as established by its API key."""

    tenant_id: str
    api_key_id: str


class ApiKeyView(BaseModel):
    """An API key as listed: never the key itself."""

    model_config = ConfigDict(frozen=True)

    id: str
    tenant_id: str
    name: str
    key_prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class IssuedApiKey(ApiKeyView):
    """A freshly issued key: ``key`` is shown this once and cannot be recovered later."""

    key: str


class ApiKeyPage(Page[ApiKeyView]):
    """A page of a tenant's API keys."""


def hash_api_key(key: str) -> str:
    """The stored form of an API key."""
    return hashlib.sha256(key.encode()).hexdigest()


def touch_last_used(
    db: Database, model: type[ApiKey] | type[AppApiKey], key_id: str, last_used: datetime | None
) -> None:
    """Note that a key of ``model`` was used now: written at most once per resolution period (and
    only by the first request to see it stale), in a short transaction of its own."""
    now = utcnow()
    stale = now - LAST_USED_RESOLUTION
    if last_used is not None and last_used >= stale:
        return
    with db.transaction() as session:
        session.execute(
            update(model)
            .where(model.id == key_id)
            .where(or_(model.last_used_at.is_(None), model.last_used_at < stale))
            .values(last_used_at=now)
        )


def generate_api_key() -> str:
    """A new random API key: ``relay-`` and 43 URL-safe characters (256 bits)."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def check_admin_token(settings: Settings, token: str | None) -> None:
    """Pass when ``token`` is the configured admin token; raise otherwise.

    Raises ``AdminDisabled`` (403) when no admin token is configured and ``Unauthorized`` (401)
    for a missing or wrong token. The comparison takes the same time wherever they differ.
    """
    expected = settings.api.admin_token
    if not expected:
        raise AdminDisabled(
            "admin endpoints are disabled: set RELAY_API_ADMIN_TOKEN to enable them"
        )
    if token is None or not hmac.compare_digest(token.encode(), expected.encode()):
        raise Unauthorized("missing or invalid admin token")


def _view(row: ApiKey) -> ApiKeyView:
    return ApiKeyView(
        id=row.id,
        tenant_id=row.tenant_id,
        name=row.name,
        key_prefix=row.key_prefix,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


def _views(rows: Sequence[ApiKey]) -> list[ApiKeyView]:
    return [_view(row) for row in rows]


class AuthService:
    """Authenticates API keys and issues, lists and revokes them."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def by_key_id(self, api_key_id: str, tenant_id: str) -> TenantPrincipal:
        """The tenant of a key known by id (a stream token's); refused like ``authenticate``
        once the key is revoked or the tenant archived."""
        with self.runtime.db.session() as session:
            found = session.execute(
                select(ApiKey.revoked_at, Tenant.status)
                .join(Tenant, Tenant.id == ApiKey.tenant_id)
                .where(ApiKey.id == api_key_id, ApiKey.tenant_id == tenant_id)
            ).first()
        if found is None or found.revoked_at is not None:
            raise Unauthorized("missing or invalid API key")
        if found.status != TenantStatus.NORMAL:
            raise Forbidden("this tenant is archived")
        return TenantPrincipal(tenant_id=tenant_id, api_key_id=api_key_id)

    def authenticate(self, key: str | None) -> TenantPrincipal:
        """The tenant behind ``key``; ``Unauthorized`` when it is unknown or revoked."""
        if not key or not key.startswith(API_KEY_PREFIX):
            raise Unauthorized("missing or invalid API key")
        # A read: every request authenticates, and on SQLite a write transaction would make
        # each one wait for the single write lock.
        with self.runtime.db.session() as session:
            found = session.execute(
                select(ApiKey.id, ApiKey.tenant_id, ApiKey.revoked_at, ApiKey.last_used_at,
                       Tenant.status)
                .join(Tenant, Tenant.id == ApiKey.tenant_id)
                .where(ApiKey.key_hash == hash_api_key(key))
            ).first()  # fmt: skip
        if found is None or found.revoked_at is not None:
            # Unknown and revoked keys answer alike.
            raise Unauthorized("missing or invalid API key")
        if found.status != TenantStatus.NORMAL:
            raise Forbidden("this tenant is archived")
        touch_last_used(self.runtime.db, ApiKey, found.id, found.last_used_at)
        return TenantPrincipal(tenant_id=found.tenant_id, api_key_id=found.id)

    def issue_key(self, tenant_id: str, name: str) -> IssuedApiKey:
        """Create a key for the tenant; the answer is the only place the key ever appears."""
        name = name.strip()
        if not name or len(name) > 255:
            raise BadRequest("name must be 1 to 255 characters", details={"field": "name"})
        key = generate_api_key()
        with self.runtime.db.transaction() as session:
            if session.get(Tenant, tenant_id) is None:
                raise NotFound("tenant not found")
            row = ApiKey(
                id=new_id(),
                tenant_id=tenant_id,
                name=name,
                key_hash=hash_api_key(key),
                key_prefix=key[:DISPLAY_PREFIX_LENGTH],
                created_at=utcnow(),
            )
            session.add(row)
            session.flush()
            return IssuedApiKey(**_view(row).model_dump(), key=key)

    def list_keys(self, tenant_id: str, page: PageParams) -> ApiKeyPage:
        """The tenant's keys (revoked ones included), newest first."""
        with self.runtime.db.session() as session:
            if session.get(Tenant, tenant_id) is None:
                raise NotFound("tenant not found")
            query = (
                select(ApiKey)
                .where(ApiKey.tenant_id == tenant_id)
                .order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
            )
            return paginate(session, query, page, _views, ApiKeyPage)

    def revoke_key(self, tenant_id: str, key_id: str) -> None:
        """Revoke a key of the tenant at once (idempotent)."""
        with self.runtime.db.transaction() as session:
            row = session.scalar(
                select(ApiKey).where(ApiKey.tenant_id == tenant_id, ApiKey.id == key_id)
            )
            if row is None:
                raise NotFound("API key not found")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
