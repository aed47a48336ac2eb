"""App API keys: the credentials of an app's Dify-compatible Service API.

A key (``app-`` and 43 URL-safe characters) belongs to one app of one tenant and reaches only
that app. It is shown once, when issued; only its SHA-256 hex digest is stored (as for tenant
keys). Revoking is immediate and idempotent; deleting the app deletes its keys.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from relay.errors import BadRequest, Forbidden, NotFound, Unauthorized
from relay.models import App, AppApiKey, AppStatus, Tenant, TenantStatus, new_id, utcnow
from relay.runtime import Runtime
from relay.services.app_service import require_app
from relay.services.auth_service import hash_api_key, touch_last_used
from relay.services.pagination import Page, PageParams, paginate

APP_KEY_PREFIX = "app-"
DISPLAY_PREFIX_LENGTH = len(APP_KEY_PREFIX) + 6


@dataclass(frozen=True)
class AppPrincipal:
    """Who a Service API request acts for: one app of one tenant."""

    tenant_id: str
    app_id: str
    api_key_id: str


class AppKeyView(BaseModel):
    """An app key as listed: never the key itself."""

    model_config = ConfigDict(frozen=True)

    id: str
    app_id: str
    name: str
    key_prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class IssuedAppKey(AppKeyView):
    """A freshly issued key: ``key`` is shown this once."""

    key: str


class AppKeyPage(Page[AppKeyView]):
    """A page of an app's keys."""


def generate_app_key() -> str:
    """A new random app key: ``app-`` and 43 URL-safe characters (256 bits)."""
    return APP_KEY_PREFIX + secrets.token_urlsafe(32)


def _view(row: AppApiKey) -> AppKeyView:
    return AppKeyView(
        id=row.id,
        app_id=row.app_id,
        name=row.name,
        key_prefix=row.key_prefix,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


class AppKeyService:
    """Issues, lists, revokes and authenticates app API keys."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def issue(self, tenant_id: str, app_id: str, name: str = "Service API") -> IssuedAppKey:
        """Create a key for the tenant's app; the answer is the only place the key appears."""
        name = name.strip()
        if not name or len(name) > 255:
            raise BadRequest("name must be 1 to 255 characters", details={"field": "name"})
        key = generate_app_key()
        with self.runtime.db.transaction() as session:
            require_app(session, tenant_id, app_id)
            row = AppApiKey(
                id=new_id(),
                tenant_id=tenant_id,
                app_id=app_id,
                name=name,
                key_hash=hash_api_key(key),
                key_prefix=key[:DISPLAY_PREFIX_LENGTH],
                created_at=utcnow(),
            )
            session.add(row)
            session.flush()
            return IssuedAppKey(**_view(row).model_dump(), key=key)

    def list_keys(self, tenant_id: str, app_id: str, page: PageParams) -> AppKeyPage:
        """The app's keys (revoked ones included), newest first."""
        with self.runtime.db.session() as session:
            require_app(session, tenant_id, app_id)
            query = (
                select(AppApiKey)
                .where(AppApiKey.tenant_id == tenant_id, AppApiKey.app_id == app_id)
                .order_by(AppApiKey.created_at.desc(), AppApiKey.id.desc())
            )
            return paginate(session, query, page, lambda rows: [_view(r) for r in rows], AppKeyPage)

    def revoke(self, tenant_id: str, app_id: str, key_id: str) -> None:
        """Revoke a key of the app at once (idempotent)."""
        with self.runtime.db.transaction() as session:
            row = session.scalar(
                select(AppApiKey).where(
                    AppApiKey.tenant_id == tenant_id,
                    AppApiKey.app_id == app_id,
                    AppApiKey.id == key_id,
                )
            )
            if row is None:
                raise NotFound("API key not found")
            if row.revoked_at is None:
                row.revoked_at = utcnow()

    def authenticate(self, key: str | None) -> AppPrincipal:
        """The app behind ``key``; ``Unauthorized`` when it is unknown or revoked."""
        if not key or not key.startswith(APP_KEY_PREFIX):
            raise Unauthorized("Access token is invalid")
        with self.runtime.db.session() as session:
            found = session.execute(
                select(AppApiKey.id, AppApiKey.tenant_id, AppApiKey.app_id, AppApiKey.revoked_at,
                       AppApiKey.last_used_at, Tenant.status.label("tenant_status"),
                       App.status.label("app_status"))
                .join(Tenant, Tenant.id == AppApiKey.tenant_id)
                .join(App, (App.id == AppApiKey.app_id) & (App.tenant_id == AppApiKey.tenant_id))
                .where(AppApiKey.key_hash == hash_api_key(key))
            ).first()  # fmt: skip
        if found is None or found.revoked_at is not None:
            raise Unauthorized("Access token is invalid")
        if found.tenant_status != TenantStatus.NORMAL:
            raise Forbidden("The workspace is archived")
        if found.app_status != AppStatus.NORMAL:
            raise Forbidden("The app is archived")
        touch_last_used(self.runtime.db, AppApiKey, found.id, found.last_used_at)
        return AppPrincipal(tenant_id=found.tenant_id, app_id=found.app_id, api_key_id=found.id)
