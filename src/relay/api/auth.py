"""Who is calling: the admin token for tenant management, an API key for everything else.

Both arrive as ``Authorization: Bearer <token>``. Blueprints install :func:`require_admin` or
:func:`authenticate_tenant` as ``before_request``, so no route can forget its check, and tenant
handlers read the tenant with :func:`tenant_id` (from the key, never from the request).
"""

from __future__ import annotations

from typing import cast

from flask import current_app, g, request

from relay.runtime import Runtime
from relay.services.auth_service import AuthService, TenantPrincipal, check_admin_token

_PRINCIPAL = "relay_principal"


def current_runtime() -> Runtime:
    """The runtime of the app serving this request."""
    return cast(Runtime, current_app.extensions["relay"])


def bearer_token() -> str | None:
    """The token of an ``Authorization: Bearer`` header, or None."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def require_admin() -> None:
    """``before_request`` of admin blueprints: 403 when admin is off, 401 on a bad token."""
    check_admin_token(current_runtime().settings, bearer_token())


def authenticate_tenant() -> None:
    """``before_request`` of tenant blueprints: 401 unless the API key is known and active."""
    setattr(g, _PRINCIPAL, AuthService(current_runtime()).authenticate(bearer_token()))


def principal() -> TenantPrincipal:
    """The authenticated caller of this request."""
    found = g.get(_PRINCIPAL)
    if not isinstance(found, TenantPrincipal):
        # A tenant handler mounted outside the authenticated blueprint: a bug, not a 401.
        raise RuntimeError("tenant route is not behind authenticate_tenant")
    return found


def tenant_id() -> str:
    """The id of the tenant whose API key authenticated this request."""
    return principal().tenant_id


def tenant_or_none() -> str | None:
    """The authenticated tenant of this request, or ``None`` (admin and public routes)."""
    found = g.get(_PRINCIPAL)
    return found.tenant_id if isinstance(found, TenantPrincipal) else None
