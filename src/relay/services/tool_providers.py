"""Tool providers a tenant sets up: credentials of built-in tools, API tools from an OpenAPI
schema, MCP servers.

Credentials are encrypted with Fernet (``cryptography``) under
``RELAY_WORKFLOW_TOOL_CREDENTIALS_KEY`` before they reach the database, listed masked, and
decrypted only for a tool call in a worker (:class:`SqlTenantTools`). They are never logged and
never returned in clear. Every query is scoped by tenant.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from cryptography.fernet import Fernet, InvalidToken
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from sqlalchemy import select

from relay.adapters.sql import Database
from relay.errors import BadRequest, ConfigError, NotFound
from relay.models.base import utcnow
from relay.models.tool_provider import ToolProviderSetting
from relay.runtime import Runtime
from relay.workflow.tools.base import BUILTIN_PROVIDER_IDS, TenantToolProvider, ToolError
from relay.workflow.tools.openapi import parse_schema

KEY_SETTING = "RELAY_WORKFLOW_TOOL_CREDENTIALS_KEY"
ProviderType = Literal["builtin", "api", "mcp"]
_MASK = "******"


class CredentialKeyMissing(ConfigError):
    """The operator has not configured the key credentials are encrypted with."""

    status = 503
    code = "tool_credentials_key_missing"


class CredentialCipher:
    """Fernet encryption of a credentials mapping; without a key nothing can be stored."""

    def __init__(self, key: SecretStr | None) -> None:
        self._fernet: Fernet | None = None
        if key is not None:
            try:
                self._fernet = Fernet(key.get_secret_value().encode())
            except ValueError:
                raise ConfigError(
                    f"{KEY_SETTING} is not a Fernet key (32 bytes, urlsafe base64); make one "
                    "with: python -c 'from cryptography.fernet import Fernet; "
                    "print(Fernet.generate_key().decode())'"
                ) from None

    def _need(self) -> Fernet:
        if self._fernet is None:
            raise CredentialKeyMissing(
                f"tool credentials cannot be stored or read: set {KEY_SETTING}"
            )
        return self._fernet

    def encrypt(self, credentials: Mapping[str, str]) -> str:
        """The token stored for ``credentials`` (empty for none)."""
        if not credentials:
            return ""
        return self._need().encrypt(json.dumps(dict(credentials)).encode()).decode()

    def decrypt(self, token: str) -> dict[str, str]:
        """The credentials a token holds."""
        if not token:
            return {}
        try:
            found = json.loads(self._need().decrypt(token.encode()))
        except InvalidToken:
            raise ConfigError(
                f"stored tool credentials do not decrypt with {KEY_SETTING} (was the key changed?)"
            ) from None
        return {str(k): str(v) for k, v in found.items()}


def mask(value: str) -> str:
    """Enough of a secret to recognise it: its first and last two characters."""
    return f"{value[:2]}{_MASK}{value[-2:]}" if len(value) > 8 else _MASK


class ToolProviderBody(BaseModel):
    """What a tenant stores for a provider."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    credentials: dict[str, str] = Field(
        default_factory=dict,
        description="secret values (api_key, searxng_base_url, header:<Name>...); encrypted",
        max_length=32,
    )
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="api: {schema: OpenAPI document}; mcp: {server_url}; builtin: {}",
    )


class ToolProviderView(BaseModel):
    """A stored provider as listed: credentials masked."""

    model_config = ConfigDict(frozen=True)

    provider_type: str
    provider_id: str
    credentials: dict[str, str]
    config: dict[str, Any]
    tools: list[str]
    updated_at: datetime


class ToolProviderList(BaseModel):
    """Every provider the tenant set up."""

    model_config = ConfigDict(frozen=True)

    data: list[ToolProviderView]


class ToolProviderService:
    """Set, list and delete a tenant's tool providers."""

    def __init__(self, runtime: Runtime) -> None:
        self.db = runtime.db
        self.cipher = CredentialCipher(runtime.settings.workflow.tool_credentials_key)

    def put(
        self, tenant_id: str, provider_type: str, provider_id: str, body: ToolProviderBody
    ) -> ToolProviderView:
        """Create or replace the tenant's entry; 400 with the reason when it cannot work."""
        kind, name = _check(provider_type, provider_id, body)
        for key, value in body.credentials.items():
            if not key or len(key) > 128 or len(value) > 8192:
                raise BadRequest("credential names are 1-128 characters, values at most 8192",
                                 details={"field": f"credentials.{key[:128]}"})  # fmt: skip
        token = self.cipher.encrypt(body.credentials)  # before the transaction: no key, no row
        with self.db.session() as session, session.begin():
            row = session.scalars(_scoped(tenant_id, kind, name)).first()
            if row is None:
                row = ToolProviderSetting(tenant_id=tenant_id, provider_type=kind, provider_id=name)
                session.add(row)
            row.config = dict(body.config)
            row.credentials = token
            row.updated_at = utcnow()
            session.flush()
            return self._view(row, body.credentials)

    def list(self, tenant_id: str) -> ToolProviderList:
        """The tenant's providers, credentials masked."""
        query = (
            select(ToolProviderSetting)
            .where(ToolProviderSetting.tenant_id == tenant_id)
            .order_by(ToolProviderSetting.provider_type, ToolProviderSetting.provider_id)
        )
        with self.db.session() as session:
            rows = list(session.scalars(query))
            return ToolProviderList(
                data=[self._view(row, self.cipher.decrypt(row.credentials)) for row in rows]
            )

    def delete(self, tenant_id: str, provider_type: str, provider_id: str) -> None:
        """Forget the entry; 404 when the tenant has none."""
        with self.db.session() as session, session.begin():
            row = session.scalars(_scoped(tenant_id, provider_type, provider_id)).first()
            if row is None:
                raise NotFound(
                    f"no {provider_type} tool provider '{provider_id}' is set up for this tenant"
                )
            session.delete(row)

    @staticmethod
    def _view(row: ToolProviderSetting, credentials: Mapping[str, str]) -> ToolProviderView:
        tools: list[str] = []
        if row.provider_type == "api":
            tools = list(parse_schema(row.config.get("schema"))[1])
        return ToolProviderView(
            provider_type=row.provider_type,
            provider_id=row.provider_id,
            credentials={k: mask(v) for k, v in credentials.items()},
            config=dict(row.config),
            tools=tools,
            updated_at=row.updated_at,
        )


class SqlTenantTools:
    """``TenantTools`` over the ``tool_providers`` table: one short read, then no transaction
    is held while the tool calls out."""

    def __init__(self, db: Database, key: SecretStr | None) -> None:
        self.db = db
        self.cipher = CredentialCipher(key)

    def get(
        self, tenant_id: str, provider_type: str, provider_id: str
    ) -> TenantToolProvider | None:
        kind = "builtin" if provider_type == "plugin" else provider_type
        name = _short(provider_id) if kind == "builtin" else provider_id
        with self.db.session() as session:
            row = session.scalars(_scoped(tenant_id, kind, name)).first()
            if row is None:
                return None
            config, token = dict(row.config), row.credentials
        return TenantToolProvider(kind, name, config, self.cipher.decrypt(token))


def _scoped(tenant_id: str, provider_type: str, provider_id: str) -> Any:
    return select(ToolProviderSetting).where(
        ToolProviderSetting.tenant_id == tenant_id,
        ToolProviderSetting.provider_type == provider_type,
        ToolProviderSetting.provider_id == provider_id,
    )


def _short(provider_id: str) -> str:
    return provider_id.rstrip("/").rsplit("/", 1)[-1]


def _check(provider_type: str, provider_id: str, body: ToolProviderBody) -> tuple[str, str]:
    if provider_type not in ("builtin", "api", "mcp"):
        raise BadRequest(
            f"provider type '{provider_type}' cannot be set up: use builtin, api or mcp",
            details={"field": "provider_type"},
        )
    if not provider_id or len(provider_id) > 255:
        raise BadRequest("provider id must be 1-255 characters", details={"field": "provider_id"})
    if provider_type == "builtin":
        name = _short(provider_id)
        if name not in BUILTIN_PROVIDER_IDS:
            raise BadRequest(
                f"'{provider_id}' is not a built-in tool provider of relay "
                f"(built-in: {', '.join(BUILTIN_PROVIDER_IDS)})",
                details={"field": "provider_id"},
            )
        return provider_type, name
    if provider_type == "api":
        try:
            parse_schema(body.config.get("schema"))
        except ToolError as exc:
            raise BadRequest(exc.message, details={"field": "config.schema"}) from None
    else:
        url = body.config.get("server_url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise BadRequest("an mcp provider needs config.server_url, an http(s) URL",
                             details={"field": "config.server_url"})  # fmt: skip
    return provider_type, provider_id
