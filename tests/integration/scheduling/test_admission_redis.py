"""Admission on real Redis: concurrent requests never get past the limit."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from relay.config import Plan
from relay.scheduling.admission import AdmissionDecision, Limit, RedisAdmission
from relay.scheduling.settings import SchedulingSettings

SETTINGS = SchedulingSettings(
    rate_per_second={Plan.SANDBOX: 0.01, Plan.TEAM: 1000.0},
    rate_burst={Plan.SANDBOX: 20, Plan.TEAM: 1000},
    daily_workflow_runs={Plan.SANDBOX: 1000, Plan.TEAM: 20, Plan.ENTERPRISE: 0},
)


def _hammer(check: object, n: int = 100) -> list[AdmissionDecision]:
    barrier = threading.Barrier(n)

    def one(_: int) -> AdmissionDecision:
        barrier.wait()  # all at once
        return check()  # type: ignore[operator,no-any-return]

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_100_concurrent_submissions_against_a_burst_of_20(
    redis_client: redis.Redis, prefix: str
) -> None:
    admission = RedisAdmission(redis_client, SETTINGS, prefix=prefix)
    decisions = _hammer(lambda: admission.check_submission("t1", Plan.SANDBOX))
    accepted = [d for d in decisions if d.allowed]
    refused = [d for d in decisions if not d.allowed]
    assert (len(accepted), len(refused)) == (20, 80)
    assert all(d.limit == Limit.RATE and d.retry_after > 0 for d in refused)
    assert refused[0].retry_after_header.isdigit()
    assert admission.check_submission("t2", Plan.SANDBOX).allowed, "other tenants unaffected"


def test_100_concurrent_workflow_runs_against_a_daily_quota_of_20(
    redis_client: redis.Redis, prefix: str
) -> None:
    admission = RedisAdmission(redis_client, SETTINGS, prefix=prefix)
    decisions = _hammer(lambda: admission.check_workflow_run("t1", Plan.TEAM))
    assert sum(d.allowed for d in decisions) == 20
    refused = [d for d in decisions if not d.allowed]
    assert all(d.limit == Limit.DAILY_RUNS for d in refused)
    assert all(0 < d.retry_after <= 86400 for d in refused), "until UTC midnight"
    assert sorted(d.remaining for d in decisions if d.allowed) == [float(n) for n in range(20)]
    runs_keys = list(redis_client.scan_iter(match=f"{prefix}:*runs:*"))
    assert len(runs_keys) == 1
    assert 0 < redis_client.ttl(runs_keys[0]) <= 86400 + 3600


def test_a_refused_run_takes_no_token_and_unlimited_plans_pass(
    redis_client: redis.Redis, prefix: str
) -> None:
    settings = SETTINGS.model_copy(update={"daily_workflow_runs": {Plan.SANDBOX: 1}})
    admission = RedisAdmission(redis_client, settings, prefix=prefix)
    assert admission.check_workflow_run("t", Plan.SANDBOX).allowed
    for _ in range(5):
        assert not admission.check_workflow_run("t", Plan.SANDBOX).allowed
    # 20 tokens of burst, one used by the admitted run: 19 left.
    assert admission.check_submission("t", Plan.SANDBOX, count=19).allowed
    assert not admission.check_submission("t", Plan.SANDBOX).allowed
    assert admission.check_workflow_run("e", Plan.ENTERPRISE) == AdmissionDecision(True)


def test_refill_is_measured_on_the_redis_clock(redis_client: redis.Redis, prefix: str) -> None:
    settings = SETTINGS.model_copy(
        update={"rate_per_second": {Plan.SANDBOX: 50.0}, "rate_burst": {Plan.SANDBOX: 1}}
    )
    admission = RedisAdmission(redis_client, settings, prefix=prefix)
    assert admission.check_submission("t", Plan.SANDBOX).allowed
    refused = admission.check_submission("t", Plan.SANDBOX)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(0.02, abs=0.02)
    bucket = f"{prefix}:{{t}}:bucket"
    assert 0 < redis_client.pttl(bucket) <= 1100, "an idle bucket expires"


def test_refunds_give_back_tokens_and_the_days_run_capped_at_the_burst(
    redis_client: redis.Redis, prefix: str
) -> None:
    settings = SETTINGS.model_copy(update={"daily_workflow_runs": {Plan.SANDBOX: 1}})
    admission = RedisAdmission(redis_client, settings, prefix=prefix)
    assert admission.check_workflow_run("t", Plan.SANDBOX).allowed
    assert not admission.check_workflow_run("t", Plan.SANDBOX).allowed, "the day's only run"
    admission.refund_workflow_run("t", Plan.SANDBOX)
    assert admission.check_workflow_run("t", Plan.SANDBOX).allowed, "refunded: runs again"

    assert admission.check_submission("t", Plan.SANDBOX, count=19).allowed  # the bucket is empty
    admission.refund_submission("t", Plan.SANDBOX, 5)
    assert admission.check_submission("t", Plan.SANDBOX, count=5).allowed
    assert not admission.check_submission("t", Plan.SANDBOX).allowed
    admission.refund_submission("t", Plan.SANDBOX, 500)  # never above the burst
    assert admission.check_submission("t", Plan.SANDBOX, count=20).allowed
    assert not admission.check_submission("t", Plan.SANDBOX).allowed
    admission.refund_workflow_run("fresh", Plan.SANDBOX)  # nothing to give back: no debt
    assert admission.check_workflow_run("fresh", Plan.SANDBOX).allowed
    assert not admission.check_workflow_run("fresh", Plan.SANDBOX).allowed
