"""Property tests of the pure fair-share policy (virtual runtime, weighted, CFS-like)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.scheduling.fairshare import MIN_CHARGE, NEWCOMER_LEAD, FairShare, jain_index, shares

weights_st = st.lists(st.sampled_from([1, 4, 8, 16]), min_size=2, max_size=10)
cost_range_st = st.tuples(
    st.floats(min_value=0.1, max_value=1.0), st.floats(min_value=1.0, max_value=5.0)
)


def _saturate(
    weights: list[int], steps: int, costs: list[float]
) -> tuple[FairShare, dict[str, float], list[str]]:
    """Every tenant always has work waiting; ``costs`` cycle as the work of successive picks."""
    policy = FairShare()
    tenants = [f"t{i:02d}" for i in range(len(weights))]
    for tenant, weight in zip(tenants, weights, strict=True):
        policy.activate(tenant, weight)
    work = dict.fromkeys(tenants, 0.0)
    picks: list[str] = []
    for step in range(steps):
        cost = costs[step % len(costs)]
        picked = policy.pick_and_charge(tenants, cost)
        assert picked is not None
        work[picked] += cost
        picks.append(picked)
    return policy, work, picks


@settings(max_examples=40, deadline=None)
@given(
    weights=weights_st,
    bounds=cost_range_st,
    raw=st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=30),
)
def test_virtual_runtimes_never_drift_apart_so_shares_converge_to_weights(
    weights: list[int], bounds: tuple[float, float], raw: list[float]
) -> None:
    low, high = bounds
    costs = [low + r * (high - low) for r in raw]
    policy, work, _ = _saturate(weights, 3000, costs)

    # Lag bound: the pick is always the minimum, so no tenant gets ahead of another by more than
    # one task's worth of virtual runtime. This is what makes the shares converge.
    lag = max(costs) / min(weights)
    values = list(policy.vruntimes.values())
    assert max(values) - min(values) <= lag + 1e-9

    total_weight = sum(weights)
    floor = min(values)
    for tenant, weight in zip(sorted(work), weights, strict=True):
        expected = weight / total_weight
        achieved = work[tenant] / sum(work.values())
        # |achieved/expected - 1| <= lag / floor: shrinks as 1/steps.
        assert abs(achieved / expected - 1) <= lag / floor + 1e-9


def test_shares_are_within_five_percent_of_weights_for_the_benchmark_mix() -> None:
    weights = [1, 1, 1, 4, 4, 8, 8, 16, 16, 16]
    _, work, _ = _saturate(weights, 20_000, [0.002, 0.003, 0.0015, 0.0025])
    achieved = shares(work)
    for (tenant, share), weight in zip(sorted(achieved.items()), weights, strict=True):
        assert share == pytest.approx(weight / sum(weights), rel=0.05), tenant
    equal = _saturate([1] * 10, 5000, [0.002, 0.003])[1]
    assert jain_index(equal.values()) >= 0.999


@settings(max_examples=60, deadline=None)
@given(
    weights=weights_st,
    history=st.lists(st.floats(min_value=0.01, max_value=3.0), min_size=0, max_size=200),
    newcomer_weight=st.sampled_from([1, 4, 8, 16]),
    newcomer_name=st.sampled_from(["a", "t05", "zz"]),
)
def test_a_new_tenant_is_served_within_one_scheduling_round(
    weights: list[int], history: list[float], newcomer_weight: int, newcomer_name: str
) -> None:
    policy = FairShare()
    tenants = [f"t{i:02d}x" for i in range(len(weights))]
    for tenant, weight in zip(tenants, weights, strict=True):
        policy.activate(tenant, weight)
    for cost in history:
        policy.pick_and_charge(tenants, cost)

    start = policy.activate(newcomer_name, newcomer_weight)
    all_served = all(policy.vruntimes[t] > start for t in tenants)
    lowest = min(policy.vruntimes[t] for t in tenants)
    assert start == pytest.approx(lowest, abs=2 * NEWCOMER_LEAD), "starts at the minimum"
    everyone = [*tenants, newcomer_name]
    picks = next(
        (
            n
            for n in range(1, len(everyone) + 1)
            if policy.pick_and_charge(everyone, 1.0) == newcomer_name
        ),
        None,
    )
    assert picks is not None, "newcomer not served within one round"
    if all_served:
        assert picks == 1, "ties at the floor go to the newcomer, who has had no service yet"


@settings(max_examples=40, deadline=None)
@given(weights=weights_st, bounds=cost_range_st, seed=st.integers(0, 2**16))
def test_no_tenant_starves(weights: list[int], bounds: tuple[float, float], seed: int) -> None:
    low, high = bounds
    costs = [low + ((seed * (i + 7)) % 97) / 96 * (high - low) for i in range(97)]
    _, _, picks = _saturate(weights, 2000, costs)
    tenants = [f"t{i:02d}" for i in range(len(weights))]
    for tenant, weight in zip(tenants, weights, strict=True):
        # While ``tenant`` waits, another tenant j is picked only while its virtual runtime is at
        # most ``tenant``'s, which one charge moves by at most high/weight: a bounded gap.
        bound = 1 + sum(
            math.ceil(high * w / (low * weight)) + 1
            for t, w in zip(tenants, weights, strict=True)
            if t != tenant
        )
        last = -1
        for index, picked in enumerate(picks):
            if picked == tenant:
                assert index - last <= bound
                last = index
        assert len(picks) - last <= bound


def test_a_tenant_cannot_bank_credit_by_idling() -> None:
    policy = FairShare()
    policy.activate("busy", 1)
    policy.activate("idle", 1)
    policy.deactivate("idle")
    for _ in range(100):
        policy.pick_and_charge(["busy"], 1.0)
    assert policy.activate("idle", 1) == pytest.approx(policy.vruntimes["busy"], abs=1e-5)


def test_a_tenant_cannot_shed_debt_by_leaving_and_coming_back() -> None:
    policy = FairShare()
    policy.activate("hog", 1)
    policy.activate("other", 1)
    for _ in range(10):
        policy.charge("hog", 1.0)
    policy.deactivate("hog")
    assert policy.activate("hog", 1) == pytest.approx(10.0)
    # Once everybody caught up the debt no longer matters and is forgotten.
    policy.deactivate("hog")
    policy.charge("other", 20.0)
    assert "hog" not in policy.idle
    assert policy.floor == pytest.approx(20.0)
    assert policy.activate("hog", 1) == pytest.approx(20.0, abs=1e-5)


def test_zero_cost_picks_still_make_progress() -> None:
    policy = FairShare()
    for tenant in ("a", "b"):
        policy.activate(tenant, 1)
    picks = [policy.pick_and_charge(["a", "b"], 0.0) for _ in range(4)]
    assert picks == ["a", "b", "a", "b"]
    assert policy.vruntimes["a"] == pytest.approx(2 * MIN_CHARGE - NEWCOMER_LEAD)


def test_pick_of_no_candidates_and_bad_weight() -> None:
    policy = FairShare()
    assert policy.pick([]) is None
    with pytest.raises(ValueError, match="weight"):
        policy.activate("x", 0)
    assert jain_index([]) == 1.0
    assert jain_index([1.0, 0.0]) == 0.5
