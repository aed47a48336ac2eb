"""The Lua tenant queue on real Redis: the shared contract, and lockstep with the in-memory one."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test

from relay.scheduling.fairshare import FairShare
from relay.scheduling.fairshare_redis import RedisFairShare
from relay.scheduling.tenant_queue import RedisTenantQueue, Release, TenantQueue
from relay.scheduling.tenant_queue_memory import InMemoryTenantQueue
from tests.unit.scheduling.contract import SETTINGS, Harness, TenantQueueContract
from tests.unit.scheduling.model import MODEL_SETTINGS, QueueMachine


class TestRedisTenantQueue(TenantQueueContract):
    @pytest.fixture
    def harness(self, redis_client: redis.Redis, prefix: str) -> Harness:
        tq = RedisTenantQueue(redis_client, SETTINGS.model_copy(update={"key_prefix": prefix}))
        return Harness(tq, time.sleep)


def _normal(value: Any) -> Any:
    """Results without the parts that depend on each side's clock."""
    if isinstance(value, Release):
        return replace(value, submitted_at=0.0)
    if isinstance(value, tuple | list):
        return type(value)(_normal(v) for v in value)
    if hasattr(value, "__dataclass_fields__"):
        fields = {k: _normal(getattr(value, k)) for k in value.__dataclass_fields__}
        if "waited" in fields:
            fields["waited"] = None
        if "vruntime" in fields:
            fields["vruntime"] = round(fields["vruntime"], 9)
        return type(value)(**fields)
    return value


class Lockstep:
    """Runs every call on Redis and in memory and requires the same answer."""

    def __init__(self, real: TenantQueue, reference: TenantQueue) -> None:
        self.real = real
        self.reference = reference

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            got = getattr(self.real, name)(*args, **kwargs)
            want = getattr(self.reference, name)(*args, **kwargs)
            if name == "snapshot":
                got, want = sorted(got, key=str), sorted(want, key=str)
            assert _normal(got) == _normal(want), name
            return got

        return call


def test_lua_and_in_memory_queues_make_the_same_decisions(redis_client: redis.Redis) -> None:
    prefixes: list[str] = []

    class RedisVsMemory(QueueMachine):
        @staticmethod
        def make() -> tuple[Any, None]:
            prefixes.append(f"test:lockstep:{uuid.uuid4().hex[:10]}")
            real = RedisTenantQueue(
                redis_client, MODEL_SETTINGS.model_copy(update={"key_prefix": prefixes[-1]})
            )
            return Lockstep(real, InMemoryTenantQueue(MODEL_SETTINGS)), None

    try:
        run_state_machine_as_test(
            RedisVsMemory,
            settings=settings(max_examples=25, stateful_step_count=30, deadline=None),
        )
    finally:
        for value in prefixes:
            keys = list(redis_client.scan_iter(match=value + "*", count=1000))
            if keys:
                redis_client.delete(*keys)


@settings(
    max_examples=30,
    deadline=None,
    # the client is shared on purpose; each example works under a scope of its own
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["activate", "deactivate", "pick", "charge"]),
            st.sampled_from(["t1", "t2", "t3", "t4"]),
            st.sampled_from([1, 4, 16]),
            st.floats(min_value=0, max_value=3),
        ),
        max_size=60,
    )
)
def test_lua_fair_share_picks_exactly_like_the_pure_policy(
    redis_client: redis.Redis, ops: list[tuple[str, str, int, float]]
) -> None:
    scope = uuid.uuid4().hex[:10]
    real, pure = RedisFairShare(redis_client, "test:fs", scope), FairShare()
    try:
        for op, tenant, weight, work in ops:
            if op == "activate":
                assert real.activate(tenant, weight) == pytest.approx(pure.activate(tenant, weight))
            elif op == "deactivate":
                real.deactivate(tenant)
                pure.deactivate(tenant)
            elif op == "pick":
                active = sorted(pure.vruntimes)
                assert real.pick_and_charge(active, work) == pure.pick_and_charge(active, work)
            elif tenant in pure.vruntimes:
                assert real.charge(tenant, work) == pytest.approx(pure.charge(tenant, work))
            assert real.vruntimes() == pytest.approx(pure.vruntimes)
            assert real.floor() == pytest.approx(pure.floor)
    finally:
        keys = list(redis_client.scan_iter(match=f"test:fs:{{{scope}}}:*"))
        if keys:
            redis_client.delete(*keys)
