"""``SchedulingSettings``: knobs of the fair scheduler, mounted as ``Settings.scheduling``.

Environment: ``RELAY_SCHEDULING_<FIELD>`` (dicts as JSON objects), e.g.
``RELAY_SCHEDULING_WINDOW=8`` or ``RELAY_SCHEDULING_TIME_SLICE='{"sandbox": 20}'``.
Per-plan concurrency and fair-share weights stay in ``TenancySettings``.

Per-plan dicts are keyed by the plan's name (``Plan`` is a ``StrEnum``, so ``d[Plan.TEAM]``
works). This module imports nothing from relay at import time, so ``relay.config`` can import it
to mount ``Settings.scheduling`` without an import cycle; plan names are checked at validation.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Self

from pydantic import BaseModel, Field, field_validator, model_validator

from relay.config.sections import Plan

_DEFAULT_WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class SchedulingSettings(BaseModel):
    """Fair scheduling, leases, time slices and admission control."""

    key_prefix: str = Field(
        "relay:sched", description="Prefix of the scheduler's Redis keys (one hash tag per queue)"
    )
    window: int = Field(
        8,
        ge=1,
        description="Tasks released into one Celery queue and not yet finished; keep it at a few "
        "per worker slot so that the fair order is not undone by a long FIFO",
    )
    queue_windows: dict[str, int] = Field(
        default_factory=dict,
        description="Per-queue override of `window` (JSON object queue -> size)",
    )
    lease_ttl: float = Field(
        30.0,
        gt=0,
        description="Seconds a running task's slot lives without a heartbeat; a worker killed "
        "with SIGKILL frees its slots after this long (heartbeat every third of it)",
    )
    dispatch_ttl: float = Field(
        3600.0,
        gt=0,
        description="Seconds a released task may wait in the Celery queue before it is presumed "
        "lost and released again; must exceed window/worker slots x the longest task",
    )
    tick_interval: float = Field(
        5.0,
        gt=0,
        description="Seconds between safety ticks (reclaim expired slots, refill windows); run "
        "by beat and opportunistically by workers",
    )
    reclaim_batch: int = Field(
        200, ge=1, description="Expired slots reclaimed per queue by one tick script call"
    )
    max_reclaims: int = Field(
        3,
        ge=0,
        description="Times a task's slot may be reclaimed (its worker died) before the task is "
        "given up as lost (logged, counted as 'lost'): a task that kills its worker must not "
        "loop forever",
    )
    default_cost: float = Field(
        0.05,
        gt=0,
        description="Seconds charged at release for a task type with no run time measured yet",
    )
    cost_smoothing: float = Field(
        0.2,
        gt=0,
        le=1,
        description="Weight of the newest run in the moving average of a task type's run time",
    )
    done_retention: int = Field(
        10800,
        gt=0,
        description="Seconds a finished task id is remembered, so that a late copy (the broker "
        "redelivers unacked messages after its visibility timeout) is skipped; keep it above "
        "RELAY_CELERY_VISIBILITY_TIMEOUT",
    )
    time_slice: dict[str, float] = Field(
        default_factory=lambda: {
            "sandbox": 30.0,
            "professional": 60.0,
            "team": 120.0,
            "enterprise": 120.0,
        },
        description="Seconds a workflow run may run before it yields to waiting tenants",
    )
    slice_probe_interval: float = Field(
        1.0,
        ge=0,
        description="Seconds a 'are others waiting?' answer is reused at node boundaries",
    )
    rate_per_second: dict[str, float] = Field(
        default_factory=lambda: {
            "sandbox": 5.0,
            "professional": 50.0,
            "team": 100.0,
            "enterprise": 200.0,
        },
        description="Token-bucket refill rate of task submissions per tenant and second",
    )
    rate_burst: dict[str, int] = Field(
        default_factory=lambda: {
            "sandbox": 20,
            "professional": 200,
            "team": 400,
            "enterprise": 800,
        },
        description="Token-bucket size: submissions a tenant may make at once",
    )
    daily_workflow_runs: dict[str, int] = Field(
        default_factory=lambda: {
            "sandbox": 200,
            "professional": 5000,
            "team": 50000,
            "enterprise": 0,
        },
        description="Workflow runs a tenant may start per UTC day (0 = unlimited)",
    )
    metrics_top_tenants: int = Field(
        20, ge=1, description="Tenants labelled by name in metrics; the rest are 'other'"
    )
    wait_buckets: tuple[float, ...] = Field(
        _DEFAULT_WAIT_BUCKETS,
        description="Upper bounds (seconds) of the queue-wait histogram buckets",
    )

    @field_validator("time_slice", "rate_per_second", "rate_burst", "daily_workflow_runs")
    @classmethod
    def _plan_names(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [key for key in value if key not in {p.value for p in Plan}]
        if bad:
            raise ValueError(f"unknown plan {', '.join(bad)}")
        return value

    @field_validator("queue_windows", "rate_burst")
    @classmethod
    def _at_least_one(cls, value: dict[str, int]) -> dict[str, int]:
        bad = [str(k) for k, n in value.items() if n < 1]
        if bad:
            raise ValueError(f"must be at least 1 for {', '.join(bad)}")
        return value

    @field_validator("time_slice", "rate_per_second")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [str(k) for k, n in value.items() if n <= 0]
        if bad:
            raise ValueError(f"must be positive for {', '.join(bad)}")
        return value

    @field_validator("daily_workflow_runs")
    @classmethod
    def _non_negative(cls, value: dict[str, int]) -> dict[str, int]:
        bad = [str(k) for k, n in value.items() if n < 0]
        if bad:
            raise ValueError(f"must not be negative for {', '.join(bad)}")
        return value

    @field_validator("wait_buckets")
    @classmethod
    def _increasing(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(b <= a for a, b in pairwise(value)) or value[0] <= 0:
            raise ValueError("must be positive and strictly increasing")
        return value

    @field_validator("key_prefix")
    @classmethod
    def _no_braces(cls, value: str) -> str:
        # The queue name is the Redis Cluster hash tag; a brace in the prefix would steal it.
        if not value or "{" in value or "}" in value:
            raise ValueError("must be non-empty and contain no braces")
        return value

    @model_validator(mode="after")
    def _ttls(self) -> Self:
        if self.dispatch_ttl < self.lease_ttl:
            raise ValueError("dispatch_ttl must be at least lease_ttl")
        return self

    def window_for(self, queue: str) -> int:
        """In-flight window of ``queue``."""
        return self.queue_windows.get(queue, self.window)

    def slice_for(self, plan: str) -> float:
        """Time slice of ``plan`` in seconds (the largest configured one when missing)."""
        return self.time_slice.get(plan, max(self.time_slice.values(), default=60.0))

    def problems(self, longest_time_limit: int, visibility_timeout: int) -> list[str]:
        """Settings that would misbehave with these task limits (for a start-up check)."""
        found = []
        if self.dispatch_ttl <= longest_time_limit:
            found.append(
                f"RELAY_SCHEDULING_DISPATCH_TTL ({self.dispatch_ttl:g}s) must exceed the longest "
                f"task time limit ({longest_time_limit}s): a released task waits behind running "
                "ones and would be released twice"
            )
        if self.done_retention <= visibility_timeout:
            found.append(
                f"RELAY_SCHEDULING_DONE_RETENTION ({self.done_retention}s) must exceed "
                f"RELAY_CELERY_VISIBILITY_TIMEOUT ({visibility_timeout}s): a redelivered copy "
                "would run again"
            )
        return found
