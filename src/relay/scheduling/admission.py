"""Admission control: a token-bucket rate limit on submissions and a daily quota of workflow runs.

Each check is one atomic Lua script on the tenant's keys (hash tag ``{tenant}``), so concurrent
API replicas can never admit more than the limit. A refused request consumes nothing; the decision
carries ``retry_after`` seconds, which the API turns into ``429`` with ``Retry-After``. Work that
was admitted but then not created (its transaction rolled back) gives its tokens back through
``refund_submission`` / ``refund_workflow_run``. Limits per
plan come from ``SchedulingSettings`` (``rate_per_second``, ``rate_burst``,
``daily_workflow_runs``). Days are UTC days of the Redis clock.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import redis

from relay.config import Plan
from relay.errors import Overloaded, QuotaExceeded
from relay.scheduling.fairshare_redis import LUA_PRELUDE
from relay.scheduling.settings import SchedulingSettings


class Limit(StrEnum):
    """Which limit decided."""

    NONE = "none"
    RATE = "rate_limit"
    DAILY_RUNS = "daily_workflow_runs"
    PRESSURE = "resource_pressure"


@dataclass(frozen=True)
class AdmissionDecision:
    """Allowed or not; when not, how long to wait before asking again."""

    allowed: bool
    retry_after: float = 0.0
    limit: Limit = Limit.NONE
    remaining: float | None = None  # tokens or runs left after this request

    @property
    def retry_after_header(self) -> str:
        """``Retry-After`` value: whole seconds, at least 1."""
        return str(max(1, math.ceil(self.retry_after)))

    def enforce(self) -> None:
        """Raise ``QuotaExceeded`` (HTTP 429) when refused."""
        if not self.allowed and self.limit == Limit.PRESSURE:
            raise Overloaded(
                "the service is under resource pressure and takes no new work now; "
                "try again after Retry-After seconds",
                details={"limit": str(self.limit), "retry_after": self.retry_after_header},
            )
        if not self.allowed:
            raise QuotaExceeded(
                "rate limit exceeded" if self.limit == Limit.RATE else "daily quota exhausted",
                details={"limit": str(self.limit), "retry_after": self.retry_after_header},
            )


class Admission(Protocol):
    """Admission checks; ``settings`` gives the limits per plan."""

    settings: SchedulingSettings

    def check_submission(self, tenant: str, plan: Plan | str, count: int = 1) -> AdmissionDecision:
        """Take ``count`` tokens from the tenant's submission bucket, or refuse."""
        ...

    def check_workflow_run(self, tenant: str, plan: Plan | str) -> AdmissionDecision:
        """A token and one of today's runs, both or neither."""
        ...

    def refund_submission(self, tenant: str, plan: Plan | str, count: int = 1) -> None:
        """Give back ``count`` tokens an admitted submission did not use (capped at the burst)."""
        ...

    def refund_workflow_run(self, tenant: str, plan: Plan | str) -> None:
        """Give back the token and today's run of an admitted run that was not created."""
        ...

    def refusals(self) -> dict[str, dict[str, int]]:
        """Refused requests per tenant and limit, since the counts were kept (the dashboard)."""
        ...


# --- Redis ------------------------------------------------------------------------------------

_LIB = """
local NOW_MS = clock_ms()
local NOW = NOW_MS / 1000
-- token bucket: returns tokens now available (after refill) without taking any
local function bucket_level(key, rate, burst)
  local state = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(state[1]) or burst
  local ts = tonumber(state[2]) or NOW
  return math.min(burst, tokens + math.max(NOW - ts, 0) * rate)
end
local function bucket_store(key, tokens, rate, burst)
  redis.call('HSET', key, 'tokens', num(tokens), 'ts', num(NOW))
  redis.call('PEXPIRE', key, math.ceil(burst / rate * 1000) + 1000)
end
local DAY = math.floor(NOW_MS / 86400000)
local UNTIL_MIDNIGHT = ((DAY + 1) * 86400000 - NOW_MS) / 1000
"""

_RATE = """
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens = bucket_level(KEYS[1], rate, burst)
if tokens < cost then
  bucket_store(KEYS[1], tokens, rate, burst)
  return {0, num((cost - tokens) / rate), num(tokens)}
end
bucket_store(KEYS[1], tokens - cost, rate, burst)
return {1, '0', num(tokens - cost)}
"""

_RUN = """
local rate, burst, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens = bucket_level(KEYS[1], rate, burst)
if tokens < 1 then
  bucket_store(KEYS[1], tokens, rate, burst)
  return {0, num((1 - tokens) / rate), num(tokens), 'rate'}
end
local runs_key = KEYS[2] .. DAY
local used = tonumber(redis.call('GET', runs_key) or '0')
if limit > 0 and used >= limit then
  return {0, num(UNTIL_MIDNIGHT), '0', 'runs'}
end
bucket_store(KEYS[1], tokens - 1, rate, burst)
used = redis.call('INCR', runs_key)
redis.call('EXPIRE', runs_key, math.ceil(UNTIL_MIDNIGHT) + 3600)
local left = '-1'
if limit > 0 then left = tostring(limit - used) end
return {1, '0', left, 'runs'}
"""

_REFUND = """
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
bucket_store(KEYS[1], math.min(burst, bucket_level(KEYS[1], rate, burst) + cost), rate, burst)
if KEYS[2] then
  local runs_key = KEYS[2] .. DAY
  if tonumber(redis.call('GET', runs_key) or '0') > 0 then redis.call('DECR', runs_key) end
end
return 1
"""


class RedisAdmission:
    """``Admission`` on Redis."""

    def __init__(
        self, client: redis.Redis, settings: SchedulingSettings, prefix: str = "relay:adm"
    ) -> None:
        self.redis = client
        self.settings = settings
        self.prefix = prefix
        self._rate = client.register_script(LUA_PRELUDE + _LIB + _RATE)
        self._run = client.register_script(LUA_PRELUDE + _LIB + _RUN)
        self._refund = client.register_script(LUA_PRELUDE + _LIB + _REFUND)

    def _keys(self, tenant: str) -> list[str]:
        base = f"{self.prefix}:{{{tenant}}}:"
        return [base + "bucket", base + "runs:"]

    def check_submission(self, tenant: str, plan: Plan | str, count: int = 1) -> AdmissionDecision:
        """As ``Admission.check_submission``."""
        rate, burst = _rate(self.settings, plan)
        allowed, retry, left = self._rate(keys=self._keys(tenant)[:1], args=[rate, burst, count])
        return self._counted(tenant, _decision(allowed, retry, left, Limit.RATE))

    def check_workflow_run(self, tenant: str, plan: Plan | str) -> AdmissionDecision:
        """As ``Admission.check_workflow_run``."""
        rate, burst = _rate(self.settings, plan)
        limit = self.settings.daily_workflow_runs.get(Plan(plan), 0)
        allowed, retry, left, which = self._run(keys=self._keys(tenant), args=[rate, burst, limit])
        kind = Limit.RATE if _t(which) == "rate" else Limit.DAILY_RUNS
        decision = _decision(allowed, retry, left, kind)
        if decision.remaining is not None and decision.remaining < 0:
            decision = AdmissionDecision(True)  # unlimited plan
        return self._counted(tenant, decision)

    def _counted(self, tenant: str, decision: AdmissionDecision) -> AdmissionDecision:
        """Count a refusal (one write, only when refused: admitted requests pay nothing)."""
        if not decision.allowed:
            self.redis.hincrby(self._refusals_key, f"{tenant}|{decision.limit}", 1)
        return decision

    @property
    def _refusals_key(self) -> str:
        return f"{self.prefix}:refused"

    def refusals(self) -> dict[str, dict[str, int]]:
        """As ``Admission.refusals``."""
        counts: dict[str, dict[str, int]] = {}
        for field, value in self.redis.hgetall(self._refusals_key).items():
            tenant, _, limit = _t(field).rpartition("|")
            counts.setdefault(tenant, {})[limit] = int(_t(value))
        return counts

    def refund_submission(self, tenant: str, plan: Plan | str, count: int = 1) -> None:
        """As ``Admission.refund_submission``."""
        rate, burst = _rate(self.settings, plan)
        self._refund(keys=self._keys(tenant)[:1], args=[rate, burst, count])

    def refund_workflow_run(self, tenant: str, plan: Plan | str) -> None:
        """As ``Admission.refund_workflow_run``."""
        rate, burst = _rate(self.settings, plan)
        self._refund(keys=self._keys(tenant), args=[rate, burst, 1])


# --- in memory --------------------------------------------------------------------------------


class InMemoryAdmission:
    """``Admission`` in process memory, same rules; ``clock`` returns epoch seconds."""

    def __init__(
        self, settings: SchedulingSettings, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # tenant -> (tokens, at)
        self._runs: dict[tuple[str, int], int] = {}
        self._refused: dict[str, dict[str, int]] = {}

    def _level(self, tenant: str, rate: float, burst: int, now: float) -> float:
        tokens, at = self._buckets.get(tenant, (float(burst), now))
        return min(float(burst), tokens + max(now - at, 0.0) * rate)

    def check_submission(self, tenant: str, plan: Plan | str, count: int = 1) -> AdmissionDecision:
        """As ``Admission.check_submission``."""
        rate, burst = _rate(self.settings, plan)
        with self._lock:
            now = self.clock()
            tokens = self._level(tenant, rate, burst, now)
            if tokens < count:
                self._buckets[tenant] = (tokens, now)
                self._refuse(tenant, Limit.RATE)
                return AdmissionDecision(False, (count - tokens) / rate, Limit.RATE, tokens)
            self._buckets[tenant] = (tokens - count, now)
            return AdmissionDecision(True, 0.0, Limit.RATE, tokens - count)

    def check_workflow_run(self, tenant: str, plan: Plan | str) -> AdmissionDecision:
        """As ``Admission.check_workflow_run``."""
        rate, burst = _rate(self.settings, plan)
        limit = self.settings.daily_workflow_runs.get(Plan(plan), 0)
        with self._lock:
            now = self.clock()
            tokens = self._level(tenant, rate, burst, now)
            if tokens < 1:
                self._buckets[tenant] = (tokens, now)
                self._refuse(tenant, Limit.RATE)
                return AdmissionDecision(False, (1 - tokens) / rate, Limit.RATE, tokens)
            day = int(now // 86400)
            used = self._runs.get((tenant, day), 0)
            if limit > 0 and used >= limit:
                self._refuse(tenant, Limit.DAILY_RUNS)
                return AdmissionDecision(False, (day + 1) * 86400 - now, Limit.DAILY_RUNS, 0)
            self._buckets[tenant] = (tokens - 1, now)
            self._runs[(tenant, day)] = used + 1
            if limit == 0:
                return AdmissionDecision(True)
            return AdmissionDecision(True, 0.0, Limit.DAILY_RUNS, float(limit - used - 1))

    def refund_submission(self, tenant: str, plan: Plan | str, count: int = 1) -> None:
        """As ``Admission.refund_submission``."""
        self._give_back(tenant, plan, count, run=False)

    def refund_workflow_run(self, tenant: str, plan: Plan | str) -> None:
        """As ``Admission.refund_workflow_run``."""
        self._give_back(tenant, plan, 1, run=True)

    def _refuse(self, tenant: str, limit: Limit) -> None:
        counts = self._refused.setdefault(tenant, {})
        counts[limit.value] = counts.get(limit.value, 0) + 1

    def refusals(self) -> dict[str, dict[str, int]]:
        """As ``Admission.refusals``."""
        with self._lock:
            return {tenant: dict(counts) for tenant, counts in self._refused.items()}

    def _give_back(self, tenant: str, plan: Plan | str, count: int, *, run: bool) -> None:
        rate, burst = _rate(self.settings, plan)
        with self._lock:
            now = self.clock()
            tokens = self._level(tenant, rate, burst, now)
            self._buckets[tenant] = (min(float(burst), tokens + count), now)
            day = (tenant, int(now // 86400))
            if run and self._runs.get(day, 0) > 0:
                self._runs[day] -= 1


def _rate(settings: SchedulingSettings, plan: Plan | str) -> tuple[float, int]:
    key = Plan(plan)
    return settings.rate_per_second.get(key, 1.0), settings.rate_burst.get(key, 1)


def _decision(allowed: Any, retry: Any, left: Any, limit: Limit) -> AdmissionDecision:
    return AdmissionDecision(bool(int(allowed)), float(_t(retry)), limit, float(_t(left)))


def _t(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
