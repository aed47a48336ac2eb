"""OperationsService against the real fair scheduler state and task records."""

from __future__ import annotations

import pytest

from relay.config import Plan
from relay.scheduling.tenant_queue import WaitHistogram
from relay.services.operations_service import OperationsService, quantile
from tests.integration.test_api_support import Api

QUEUE = "pipeline"


def test_tenant_shares_follow_the_scheduler_and_fair_share_follows_the_weights(api: Api) -> None:
    small = api.create_tenant("small", plan="sandbox")
    big = api.create_tenant("big", plan="team")
    dispatcher = api.runtime.dispatcher
    for tenant, plan in ((small, Plan.SANDBOX), (big, Plan.TEAM)):
        for _ in range(6):
            dispatcher.submit(tenant.id, plan, "relay.ping", ["x"], queue=QUEUE)

    shares = {s.tenant_id: s for s in OperationsService(api.runtime).tenant_shares()}
    weights = api.runtime.settings.tenancy.weights
    assert set(shares) == {small.id, big.id}
    for tenant, plan in ((small, Plan.SANDBOX), (big, Plan.TEAM)):
        share = shares[tenant.id]
        assert (share.queue, share.plan, share.weight) == (QUEUE, plan.value, weights[plan])
        assert share.running + share.waiting == 6
        assert share.running >= 1
        total = weights[Plan.SANDBOX] + weights[Plan.TEAM]
        assert share.fair_share == pytest.approx(weights[plan] / total)
    assert sum(s.share for s in shares.values()) == pytest.approx(1.0)
    assert shares[small.id].name == "small"


def test_admission_refusals_are_counted_per_tenant_and_limit(api: Api) -> None:
    tenant = api.create_tenant("busy")
    admission = api.runtime.admission
    assert admission.check_submission(tenant.id, Plan.SANDBOX).allowed
    for _ in range(3):
        assert not admission.check_submission(tenant.id, Plan.SANDBOX, count=10**9).allowed
    refusals = OperationsService(api.runtime).refusals()
    assert refusals == {tenant.id: {"rate_limit": 3}}


def test_quantiles_are_bucket_bounds() -> None:
    bounds = (0.1, 1.0, 10.0)
    histogram = WaitHistogram((50, 45, 4, 1), 0.0)
    assert quantile(histogram, bounds, 0.5) == 0.1
    assert quantile(histogram, bounds, 0.9) == 1.0
    assert quantile(histogram, bounds, 0.99) == 10.0
    assert quantile(histogram, bounds, 1.0) is None  # past the last bound
    assert quantile(WaitHistogram((0, 0, 0, 0), 0.0), bounds, 0.5) is None
