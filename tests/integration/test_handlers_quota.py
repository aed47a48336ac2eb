"""The critical ``message_was_created`` receiver: provider quota spent in one conditional UPDATE."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from relay.errors import QuotaExceeded
from relay.events import signals
from relay.events.handlers.message_quota import spend_quota
from relay.events.payloads import MessageCreated
from relay.models import Conversation, Message, ProviderQuota, QuotaType, Tenant
from relay.runtime import Runtime
from tests.waiting import run_blocked


def make_tenant(runtime: Runtime, *quotas: tuple[QuotaType, int]) -> str:
    """A tenant with the given ``openai`` quota rows (no events: the quotas are the test's)."""
    with runtime.db.transaction() as session:
        tenant = Tenant(name="acme")
        session.add(tenant)
        session.flush()
        session.add_all(
            ProviderQuota(tenant_id=tenant.id, provider="openai", quota_type=kind, quota_limit=n)
            for kind, n in quotas
        )
        return tenant.id


def record_message(runtime: Runtime, tenant: str, provider: str, tokens: int) -> None:
    """What the message service does: the message row and the event in one transaction."""
    with runtime.db.transaction() as session:
        conversation = Conversation(tenant_id=tenant, app_id="app")
        session.add(conversation)
        session.flush()
        message = Message(
            tenant_id=tenant, app_id="app", conversation_id=conversation.id, query="q"
        )
        session.add(message)
        session.flush()
        payload = MessageCreated(
            tenant_id=tenant,
            app_id="app",
            conversation_id=conversation.id,
            message_id=message.id,
            provider=provider,
            total_tokens=tokens,
        )
        runtime.bus.emit(signals.message_was_created, payload, session)


def quota_used(runtime: Runtime, tenant: str, provider: str = "openai") -> dict[str, int]:
    with runtime.db.session() as session:
        query = select(ProviderQuota.quota_type, ProviderQuota.quota_used).where(
            ProviderQuota.tenant_id == tenant, ProviderQuota.provider == provider
        )
        return dict(session.execute(query).all())


def count(runtime: Runtime, model: type[Message] | type[Conversation]) -> int:
    with runtime.db.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_a_message_spends_quota_and_over_quota_rolls_back(runtime: Runtime) -> None:
    tenant = make_tenant(runtime, (QuotaType.TRIAL, 100))
    record_message(runtime, tenant, "openai", 60)
    record_message(runtime, tenant, "openai", 40)
    assert quota_used(runtime, tenant) == {"trial": 100}
    assert count(runtime, Message) == 2

    with pytest.raises(QuotaExceeded) as excinfo:
        record_message(runtime, tenant, "openai", 1)
    assert excinfo.value.status == 429
    assert quota_used(runtime, tenant) == {"trial": 100}
    assert count(runtime, Message) == 2, "the refused message was rolled back"
    assert count(runtime, Conversation) == 2


def test_no_quota_row_means_unlimited(runtime: Runtime) -> None:
    tenant = make_tenant(runtime, (QuotaType.TRIAL, 100))
    record_message(runtime, tenant, "local-llm", 10**9)
    assert count(runtime, Message) == 1
    assert quota_used(runtime, tenant, "local-llm") == {}


def test_zero_tokens_spend_nothing_and_negative_ones_are_refused(runtime: Runtime) -> None:
    tenant = make_tenant(runtime, (QuotaType.TRIAL, 0))
    record_message(runtime, tenant, "openai", 0)
    with pytest.raises(ValueError, match="negative"):
        record_message(runtime, tenant, "openai", -5)
    assert quota_used(runtime, tenant) == {"trial": 0}
    assert count(runtime, Message) == 1


def test_one_quota_row_is_charged_free_allowance_first(runtime: Runtime) -> None:
    tenant = make_tenant(runtime, (QuotaType.PAID, 1000), (QuotaType.TRIAL, 50))
    record_message(runtime, tenant, "openai", 30)
    assert quota_used(runtime, tenant) == {"trial": 30, "paid": 0}
    record_message(runtime, tenant, "openai", 30)  # no longer fits the trial: paid pays
    assert quota_used(runtime, tenant) == {"trial": 30, "paid": 30}


def test_concurrent_messages_cannot_both_spend_the_last_units(runtime: Runtime) -> None:
    if runtime.db.is_sqlite:
        pytest.skip("SQLite serialises write transactions; the race needs PostgreSQL")
    tenant = make_tenant(runtime, (QuotaType.TRIAL, 100))
    with runtime.db.transaction() as session:
        spend_quota(session, tenant, "openai", 60)
        # The first spend holds the row; the second one's UPDATE waits for it, then re-checks.
        join = run_blocked(runtime, lambda: record_message(runtime, tenant, "openai", 60))
    with pytest.raises(QuotaExceeded):
        join()
    assert quota_used(runtime, tenant) == {"trial": 60}
