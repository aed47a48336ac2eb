"""Admission rules on the in-memory implementation (the Redis one is checked in integration)."""

from __future__ import annotations

import pytest

from relay.config import Plan
from relay.errors import QuotaExceeded
from relay.scheduling.admission import AdmissionDecision, InMemoryAdmission, Limit
from relay.scheduling.settings import SchedulingSettings
from tests.unit.scheduling.test_tenant_queue_memory import FakeClock

SETTINGS = SchedulingSettings(
    rate_per_second={Plan.SANDBOX: 2.0, Plan.TEAM: 100.0},
    rate_burst={Plan.SANDBOX: 3, Plan.TEAM: 100},
    daily_workflow_runs={Plan.SANDBOX: 2, Plan.TEAM: 0},
)


@pytest.fixture
def clock() -> FakeClock:
    clock = FakeClock()
    clock.now = 86400 * 20000 + 3600  # 01:00 UTC
    return clock


def test_token_bucket_allows_the_burst_then_refills_at_the_rate(clock: FakeClock) -> None:
    admission = InMemoryAdmission(SETTINGS, clock)
    assert all(admission.check_submission("t", Plan.SANDBOX).allowed for _ in range(3))
    refused = admission.check_submission("t", Plan.SANDBOX)
    assert not refused.allowed
    assert refused.limit == Limit.RATE
    assert refused.retry_after == pytest.approx(0.5)
    assert refused.retry_after_header == "1"
    clock.advance(0.5)
    assert admission.check_submission("t", Plan.SANDBOX).allowed
    assert admission.check_submission("other", Plan.SANDBOX).allowed, "buckets are per tenant"
    clock.advance(3600)
    assert admission.check_submission("t", Plan.SANDBOX, count=3).allowed, "capped at the burst"
    assert not admission.check_submission("t", Plan.SANDBOX).allowed


def test_daily_runs_reset_at_utc_midnight(clock: FakeClock) -> None:
    admission = InMemoryAdmission(SETTINGS, clock)
    first = admission.check_workflow_run("t", Plan.SANDBOX)
    assert first.allowed
    assert first.remaining == 1
    clock.advance(1)
    assert admission.check_workflow_run("t", Plan.SANDBOX).allowed
    clock.advance(1)
    refused = admission.check_workflow_run("t", Plan.SANDBOX)
    assert not refused.allowed
    assert refused.limit == Limit.DAILY_RUNS
    assert refused.retry_after == pytest.approx(23 * 3600 - 2)
    clock.advance(refused.retry_after)
    assert admission.check_workflow_run("t", Plan.SANDBOX).allowed


def test_unlimited_plans_and_refusals_that_consume_nothing(clock: FakeClock) -> None:
    admission = InMemoryAdmission(SETTINGS, clock)
    for _ in range(50):
        assert admission.check_workflow_run("big", Plan.TEAM) == AdmissionDecision(True)
    for _ in range(2):
        admission.check_workflow_run("t", Plan.SANDBOX)
    for _ in range(5):
        assert not admission.check_workflow_run("t", Plan.SANDBOX).allowed
    clock.advance(10)
    # The refused runs took no tokens: the bucket is full again.
    assert admission.check_submission("t", Plan.SANDBOX, count=3).allowed


def test_a_refusal_maps_to_429_with_retry_after() -> None:
    AdmissionDecision(True).enforce()
    with pytest.raises(QuotaExceeded) as info:
        AdmissionDecision(False, 2.2, Limit.RATE).enforce()
    assert info.value.status == 429
    assert info.value.details == {"limit": "rate_limit", "retry_after": "3"}


def test_refunds_give_back_tokens_and_the_days_run(clock: FakeClock) -> None:
    admission = InMemoryAdmission(SETTINGS, clock)
    assert admission.check_workflow_run("t", Plan.SANDBOX).allowed
    assert admission.check_workflow_run("t", Plan.SANDBOX).allowed
    assert not admission.check_workflow_run("t", Plan.SANDBOX).allowed  # 2 runs a day
    admission.refund_workflow_run("t", Plan.SANDBOX)
    assert admission.check_workflow_run("t", Plan.SANDBOX).allowed
    # Burst 3: three runs admitted, one refunded: one token left.
    assert admission.check_submission("t", Plan.SANDBOX).allowed
    assert not admission.check_submission("t", Plan.SANDBOX).allowed
    admission.refund_submission("t", Plan.SANDBOX, 10)  # capped at the burst of 3
    assert admission.check_submission("t", Plan.SANDBOX, count=3).allowed
    assert not admission.check_submission("t", Plan.SANDBOX).allowed
