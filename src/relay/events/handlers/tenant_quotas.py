"""A new tenant starts with a trial quota per provider of ``TenancySettings.default_quotas``."""

from __future__ import annotations

from sqlalchemy import select

from relay.events.bus import EventContext
from relay.events.payloads import TenantCreated
from relay.models import ProviderQuota, QuotaType


def create_default_quotas(payload: TenantCreated, ctx: EventContext) -> None:
    """``tenant_was_created``: one ``trial`` ``ProviderQuota`` row per configured provider.

    Providers that already have a trial row keep it, so a replayed event changes nothing.
    """
    session = ctx.require_session()
    defaults = ctx.settings.tenancy.default_quotas
    if not defaults:
        return
    existing = set(
        session.scalars(
            select(ProviderQuota.provider).where(
                ProviderQuota.tenant_id == payload.tenant_id,
                ProviderQuota.quota_type == QuotaType.TRIAL,
            )
        )
    )
    session.add_all(
        ProviderQuota(
            tenant_id=payload.tenant_id,
            provider=provider,
            quota_type=QuotaType.TRIAL,
            quota_limit=limit,
            quota_used=0,
        )
        for provider, limit in sorted(defaults.items())
        if provider not in existing
    )
    session.flush()
