"""Stream tokens: a browser's ``EventSource`` cannot send ``Authorization``, so it passes one.

A token is issued to an authenticated caller for one run and one end user, signed with the
installation's secret key (``itsdangerous``, HMAC-SHA256) and accepted only for that run's
event stream until it expires. It names the API key that asked for it: a key revoked since, or
an archived tenant, makes the token worthless too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from pydantic import BaseModel

from relay.errors import Unauthorized
from relay.models import utcnow

SALT = "relay.stream-token"


class StreamToken(BaseModel):
    """A token for ``GET /v1/workflows/runs/<run_id>/events?stream_token=...``."""

    token: str
    run_id: str
    expires_at: datetime
    events_url: str


@dataclass(frozen=True)
class StreamGrant:
    """What a valid token allows: reading ``run_id``'s events as ``user`` of ``tenant_id``."""

    tenant_id: str
    api_key_id: str
    run_id: str
    user: str


class StreamTokens:
    """Signs and checks stream tokens with ``secret`` for ``ttl`` seconds."""

    def __init__(self, secret: str, ttl: int) -> None:
        if not secret:
            raise ValueError("stream tokens need a secret key")
        self._serializer = URLSafeTimedSerializer(secret, salt=SALT)
        self.ttl = ttl

    def issue(self, grant: StreamGrant) -> tuple[str, datetime]:
        """A token for ``grant`` and the time it stops being accepted."""
        payload = {"t": grant.tenant_id, "k": grant.api_key_id, "r": grant.run_id, "u": grant.user}
        return self._serializer.dumps(payload), utcnow() + timedelta(seconds=self.ttl)

    def verify(self, token: str, run_id: str) -> StreamGrant:
        """The grant of ``token`` for ``run_id``; ``Unauthorized`` when it is not one."""
        try:
            payload: Any = self._serializer.loads(token, max_age=self.ttl)
        except SignatureExpired:
            raise Unauthorized("stream token has expired: ask for a new one") from None
        except BadSignature:
            raise Unauthorized("invalid stream token") from None
        if not isinstance(payload, dict) or payload.get("r") != run_id:
            # A token of another run answers like a forged one.
            raise Unauthorized("invalid stream token")
        fields = [payload.get(name) for name in ("t", "k", "r", "u")]
        if not all(isinstance(value, str) and value for value in fields):
            raise Unauthorized("invalid stream token")
        tenant, key, run, user = (str(value) for value in fields)
        return StreamGrant(tenant_id=tenant, api_key_id=key, run_id=run, user=user)
