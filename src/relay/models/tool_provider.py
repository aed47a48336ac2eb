"""Tool providers a tenant set up: credentials for built-in tools, OpenAPI schemas, MCP servers.

``credentials`` holds the Fernet token of the credentials' JSON (never the plain values); the
key is ``RELAY_WORKFLOW_TOOL_CREDENTIALS_KEY``. ``config`` holds what is not secret (an OpenAPI
schema, an MCP server URL).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from relay.models.base import Base, IdMixin, TenantOwned, UTCDateTime, utcnow
from relay.models.tenant import tenant_fk


class ToolProviderSetting(IdMixin, TenantOwned, Base):
    """One provider of one tenant, keyed by its type and id."""

    __tablename__ = "tool_providers"
    __table_args__ = (UniqueConstraint("tenant_id", "provider_type", "provider_id"),)

    tenant_id: Mapped[str] = tenant_fk()
    provider_type: Mapped[str] = mapped_column(String(16), nullable=False)
    provider_id: Mapped[str] = mapped_column(String(255), nullable=False)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    credentials: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)

    def __repr__(self) -> str:
        return f"<ToolProviderSetting {self.provider_type}/{self.provider_id}>"
