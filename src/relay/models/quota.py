"""The quota aggregate: how much of a model provider's quota a tenant may use and has used."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from relay.models.base import Base, IdMixin, TenantOwned, TimestampMixin
from relay.models.tenant import tenant_fk


class QuotaType(StrEnum):
    """Kind of provider quota (as in Dify's ``ProviderQuotaType``)."""

    TRIAL = "trial"
    FREE = "free"
    PAID = "paid"


class ProviderQuota(IdMixin, TimestampMixin, TenantOwned, Base):
    """A tenant's quota for one provider and quota type.

    ``quota_used`` is only ever changed by a single conditional ``UPDATE`` (so two workers cannot
    both spend the last unit); the check constraint is the backstop against going negative.
    """

    __tablename__ = "provider_quotas"
    __table_args__ = (
        UniqueConstraint("tenant_id", "provider", "quota_type"),
        CheckConstraint("quota_used >= 0", name="quota_used_non_negative"),
    )

    tenant_id: Mapped[str] = tenant_fk()
    provider: Mapped[str] = mapped_column(String(255), nullable=False)
    quota_type: Mapped[str] = mapped_column(String(32), nullable=False)
    quota_limit: Mapped[int] = mapped_column(BigInteger, nullable=False)
    quota_used: Mapped[int] = mapped_column(
        BigInteger, nullable=False, default=0, server_default="0"
    )

    @property
    def remaining(self) -> int:
        """Units left (never negative)."""
        return max(self.quota_limit - self.quota_used, 0)

    def __repr__(self) -> str:
        return (
            f"<ProviderQuota {self.tenant_id} {self.provider}/{self.quota_type} "
            f"{self.quota_used}/{self.quota_limit}>"
        )
