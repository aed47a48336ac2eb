"""A message spends the tenant's provider quota; over quota, the message is refused.

Connected as a *critical* receiver: ``QuotaExceeded`` propagates to the service, whose transaction
(the message included) rolls back, and the API answers 429.

The spend is one conditional ``UPDATE`` per quota row: the check and the increment happen
atomically in the database, so two workers can never both spend the last units (a read-then-write
would let them). A tenant may hold several quota rows for one provider (trial, free, paid); they
are tried in ``SPEND_ORDER`` and exactly one is charged, the first with room. A tenant with no
quota row for the provider is unlimited.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, case, select, update
from sqlalchemy.orm import Session

from relay.errors import QuotaExceeded
from relay.events.bus import EventContext
from relay.events.payloads import MessageCreated
from relay.models import ProviderQuota, QuotaType

# Free allowances are used up before paid credit.
SPEND_ORDER: tuple[QuotaType, ...] = (QuotaType.TRIAL, QuotaType.FREE, QuotaType.PAID)


def deduct_provider_quota(payload: MessageCreated, ctx: EventContext) -> None:
    """``message_was_created`` (critical): charge ``total_tokens`` or raise ``QuotaExceeded``."""
    spend_quota(ctx.require_session(), payload.tenant_id, payload.provider, payload.total_tokens)


def spend_quota(session: Session, tenant_id: str, provider: str, used: int) -> bool:
    """Charge ``used`` units; True when a quota row was charged, False when unlimited.

    Raises ``QuotaExceeded`` when the tenant has quota rows for ``provider`` and none has room.
    """
    if used < 0:
        raise ValueError(f"token usage cannot be negative: {used}")
    if used == 0:
        return False
    priority = case(
        {quota_type.value: rank for rank, quota_type in enumerate(SPEND_ORDER)},
        value=ProviderQuota.quota_type,
        else_=len(SPEND_ORDER),
    )
    rows = session.scalars(
        select(ProviderQuota.id)
        .where(ProviderQuota.tenant_id == tenant_id, ProviderQuota.provider == provider)
        .order_by(priority, ProviderQuota.quota_type)
    ).all()
    if not rows:
        return False
    for row_id in rows:
        # Check and increment in one statement: on PostgreSQL a concurrent spend that committed
        # first is re-checked against the row's new value, so the limit holds under concurrency.
        # A row that is full moves on to the next one, never to a false refusal.
        statement = (
            update(ProviderQuota)
            .where(ProviderQuota.id == row_id)
            .where(ProviderQuota.quota_used + used <= ProviderQuota.quota_limit)
            .values(quota_used=ProviderQuota.quota_used + used)
            .execution_options(synchronize_session=False)
        )
        if cast(CursorResult[Any], session.execute(statement)).rowcount == 1:
            return True
    raise QuotaExceeded(
        f"the {provider} quota of this workspace is used up",
        details={"provider": provider, "requested": used},
    )
