"""Who is calling: the admin token for tenant management, an API key for everything else.

Both arrive as ``Authorization: Bearer <token>``. Blueprints install :func:`require_admin` or
:func:`authenticate_tenant` as ``before_request``, so no route can forget its check, and tenant
handlers read the tenant with :func:`tenant_id` (from the key, never from the request).
"""

from __future__ import annotations

from typing import cast

from flask import current_app, g, request

from relay.errors import Unauthorized
from relay.runtime import Runtime
from relay.services.auth_service import AuthService, TenantPrincipal, check_admin_token
from relay.services.stream_tokens import StreamGrant, StreamTokens

_PRINCIPAL = "relay_principal"
_GRANT = "relay_stream_grant"

STREAM_TOKEN_PARAM = "stream_token"
STREAM_ENDPOINT = "tenant_api.workflows.run_events"
"""The one route that takes ``?stream_token=`` instead of an ``Authorization`` header."""


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


def stream_tokens() -> StreamTokens:
    """Stream tokens signed with this app's secret key."""
    ttl = current_runtime().settings.api.stream_token_ttl
    return StreamTokens(str(current_app.secret_key or ""), ttl)


def authenticate_tenant() -> None:
    """``before_request`` of tenant blueprints: 401 unless the API key is known and active.

    A run's event stream also takes a stream token in the query (``?stream_token=``) for
    browsers' ``EventSource``; it is refused anywhere else and for any other run.
    """
    key = bearer_token()
    token = request.args.get(STREAM_TOKEN_PARAM)
    if key is None and token is not None:
        run_id = (request.view_args or {}).get("run_id")
        if request.endpoint != STREAM_ENDPOINT or not isinstance(run_id, str):
            raise Unauthorized("a stream token is accepted only by the event stream of its run")
        grant = stream_tokens().verify(token, run_id)
        found = AuthService(current_runtime()).by_key_id(grant.api_key_id, grant.tenant_id)
        setattr(g, _PRINCIPAL, found)
        setattr(g, _GRANT, grant)
        return
    setattr(g, _PRINCIPAL, AuthService(current_runtime()).authenticate(key))


def stream_grant() -> StreamGrant | None:
    """The stream token this request authenticated with, if it used one."""
    found = g.get(_GRANT)
    return found if isinstance(found, StreamGrant) else None


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
