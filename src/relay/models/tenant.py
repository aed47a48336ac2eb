"""The tenant aggregate: workspaces, their members and their API keys.

Every other tenant-owned table points at ``tenants.id`` through :func:`tenant_fk`, so deleting a
tenant removes everything it owns in the database.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, MappedColumn, mapped_column

from relay.config import Plan
from relay.models.base import Base, IdMixin, TenantOwned, TimestampMixin, UTCDateTime, utcnow


def tenant_fk() -> MappedColumn[str]:
    """The ``tenant_id`` column of a tenant-owned table: indexed, cascading delete from tenants."""
    return mapped_column(
        String(36), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False, index=True
    )


class TenantStatus(StrEnum):
    """Whether a tenant may be used."""

    NORMAL = "normal"
    ARCHIVE = "archive"


class AccountRole(StrEnum):
    """What a member may do inside a tenant (as in Dify's ``TenantAccountRole``)."""

    OWNER = "owner"
    ADMIN = "admin"
    EDITOR = "editor"
    NORMAL = "normal"
    DATASET_OPERATOR = "dataset_operator"


def _plan_check() -> str:
    values = ", ".join(f"'{plan.value}'" for plan in Plan)
    return f"plan IN ({values})"


class Tenant(IdMixin, TimestampMixin, Base):
    """A workspace: the unit of isolation, quota and fair-share weight (through its plan)."""

    __tablename__ = "tenants"
    __table_args__ = (CheckConstraint(_plan_check(), name="plan"),)

    name: Mapped[str] = mapped_column(String(255), nullable=False)
    plan: Mapped[str] = mapped_column(String(32), nullable=False, default=Plan.SANDBOX)
    status: Mapped[str] = mapped_column(String(32), nullable=False, default=TenantStatus.NORMAL)

    def __repr__(self) -> str:
        return f"<Tenant {self.id} {self.name!r} plan={self.plan}>"


class Account(IdMixin, TimestampMixin, TenantOwned, Base):
    """A member of one tenant; the email is unique within the tenant."""

    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("tenant_id", "email"),)

    tenant_id: Mapped[str] = tenant_fk()
    email: Mapped[str] = mapped_column(String(255), nullable=False)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    role: Mapped[str] = mapped_column(String(32), nullable=False, default=AccountRole.NORMAL)

    def __repr__(self) -> str:
        return f"<Account {self.id} {self.email!r} role={self.role}>"


class ApiKey(IdMixin, TenantOwned, Base):
    """A tenant's API key. Only the SHA-256 hex digest is stored; the prefix is for display."""

    __tablename__ = "api_keys"

    tenant_id: Mapped[str] = tenant_fk()
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    key_prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    @property
    def active(self) -> bool:
        """False once the key has been revoked."""
        return self.revoked_at is None

    def __repr__(self) -> str:
        return f"<ApiKey {self.id} {self.key_prefix}... tenant={self.tenant_id}>"
