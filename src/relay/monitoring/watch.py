"""Conditions that come and go, turned into alerts that start and end.

``Watch.update(family, firing)`` takes every alert of one family (``health``, ``queues``,
``tenants``, ``events``) that holds right now. Each one is raised (the ``AlertManager``
de-duplicates repeats within its window, so a lasting condition is reminded once per window);
each alert of the family that held at the previous update and no longer does gets its recovery
(``resolved=True``). The firing set lives in Redis (hash ``relay:watch:<family>``), so the
check can run in any process, once per beat.

The evaluators below are pure: they turn health components, scheduler state and event error
rates into the alerts that hold now.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import redis

from relay.monitoring.alerts import Alert, AlertManager, Severity
from relay.monitoring.levels import Component, Level

WATCH_PREFIX = "relay:watch:"
_LEVEL_SEVERITY = {Level.WARNING: Severity.WARNING, Level.CRITICAL: Severity.CRITICAL}


class TenantSlots(Protocol):
    """One tenant on one queue, as the fair scheduler reports it (``TenantState``)."""

    @property
    def queue(self) -> str: ...
    @property
    def tenant(self) -> str: ...
    @property
    def weight(self) -> int: ...
    @property
    def waiting(self) -> int: ...
    @property
    def running(self) -> int: ...


class WaitCounts(Protocol):
    """A tenant's queue-wait histogram: counts per bucket, the last one +Inf."""

    @property
    def buckets(self) -> tuple[int, ...]: ...


def _same(tenant: str) -> str:
    return tenant


class Watch:
    """Raises what started or lasts, resolves what ended, per family of alerts."""

    def __init__(self, alerts: AlertManager, client: redis.Redis) -> None:
        self.alerts = alerts
        self.redis = client

    def update(self, family: str, firing: Sequence[Alert]) -> list[Alert]:
        """Apply the alerts of ``family`` that hold now; returns those sent (both kinds)."""
        key = WATCH_PREFIX + family
        previous = {str(k): json.loads(v) for k, v in self.redis.hgetall(key).items()}
        now = {alert.key: alert for alert in firing}
        sent: list[Alert] = []
        for alert in firing:
            before = previous.get(alert.key)
            if before is None or before["severity"] != str(alert.severity):
                # A new condition (or a new severity): the last recovery must not hide it.
                self.alerts.forget(alert.key)
            if self.alerts.raise_alert(alert):
                sent.append(alert)
        for name, before in previous.items():
            if name in now:
                continue
            recovery = Alert(
                name,
                Severity(before["severity"]),
                f"[resolved] {before['message']}",
                {"was": before["message"]},
                resolved=True,
            )
            self.alerts.forget(name)
            if self.alerts.raise_alert(recovery):
                sent.append(recovery)
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(key)
        if now:
            pipe.hset(
                key,
                mapping={
                    name: json.dumps({"severity": str(a.severity), "message": a.message})
                    for name, a in now.items()
                },
            )
        pipe.execute()
        return sent


def health_alerts(components: Sequence[Component]) -> list[Alert]:
    """One alert per component that is not healthy, at its level."""
    alerts = []
    for component in components:
        severity = _LEVEL_SEVERITY.get(component.level)
        if severity is None:
            continue
        reason = component.message or f"value {component.value} past {component.threshold}"
        alerts.append(
            Alert(
                f"health.{component.name}",
                severity,
                f"{component.name} is {component.level.value}: {reason}",
                {"value": component.value, "threshold": component.threshold},
            )
        )
    return alerts


def noisy_neighbours(
    states: Sequence[TenantSlots], share: float, label: Callable[[str], str] = _same
) -> list[Alert]:
    """Tenants holding more than ``share`` times their fair share of a queue's slots while
    another tenant of that queue waits.

    A tenant's fair share is the slots in use on the queue split by weight among the tenants
    that hold or want a slot.
    """
    alerts: list[Alert] = []
    by_queue: dict[str, list[TenantSlots]] = {}
    for state in states:
        by_queue.setdefault(state.queue, []).append(state)
    for queue, group in sorted(by_queue.items()):
        active = [s for s in group if s.running or s.waiting]
        used = sum(s.running for s in active)
        weights = sum(max(s.weight, 1) for s in active)
        if not used or not weights:
            continue
        for state in active:
            others_wait = any(o.waiting for o in active if o.tenant != state.tenant)
            fair = used * max(state.weight, 1) / weights
            if others_wait and state.running >= 2 and state.running > share * fair:
                alerts.append(
                    Alert(
                        f"tenant.noisy:{queue}:{label(state.tenant)}",
                        Severity.WARNING,
                        f"tenant {label(state.tenant)} holds {state.running} of {used} slots on "
                        f"{queue} (fair share {fair:.1f}) while other tenants wait",
                        {
                            "tenant_id": state.tenant,
                            "queue": queue,
                            "running": state.running,
                            "fair_share": round(fair, 2),
                            "waiting_others": sum(
                                o.waiting for o in active if o.tenant != state.tenant
                            ),
                        },
                    )
                )
    return alerts


def wait_p99(buckets: Sequence[float], counts: Sequence[int]) -> float | None:
    """The upper bound of the bucket holding the 99th percentile (``inf`` past the last bound);
    None without observations."""
    total = sum(counts)
    if total <= 0:
        return None
    rank, seen = 0.99 * total, 0
    for bound, count in zip((*buckets, float("inf")), counts, strict=True):
        seen += count
        if seen >= rank:
            return bound
    return float("inf")


def slow_tenants(
    queue: str,
    current: Mapping[str, WaitCounts],
    previous: Mapping[str, Sequence[int]],
    buckets: Sequence[float],
    threshold: float,
    label: Callable[[str], str] = _same,
) -> list[Alert]:
    """Tenants whose queue-wait p99 since ``previous`` (bucket counts of the last check) is above
    ``threshold`` seconds."""
    alerts = []
    for tenant, hist in sorted(current.items()):
        before = previous.get(tenant) or [0] * len(hist.buckets)
        delta = [max(0, now - old) for now, old in zip(hist.buckets, before, strict=True)]
        p99 = wait_p99(buckets, delta)
        if p99 is not None and p99 > threshold:
            alerts.append(
                Alert(
                    f"tenant.slow:{queue}:{label(tenant)}",
                    Severity.WARNING,
                    f"tenant {label(tenant)} waits p99 > {_seconds(p99, buckets)} on {queue} "
                    f"(threshold {threshold:g}s)",
                    {"tenant_id": tenant, "queue": queue, "observations": sum(delta)},
                )
            )
    return alerts


def _seconds(p99: float, buckets: Sequence[float]) -> str:
    # The bucket below the one holding the p99 is what the wait is known to exceed.
    lower = max((b for b in buckets if b < p99), default=0.0)
    return f"{lower:g}s"


def event_error_alerts(
    rates: Mapping[str, Mapping[str, float]], threshold: float, min_calls: int
) -> list[Alert]:
    """Signals whose receivers failed at ``threshold`` or more over at least ``min_calls``."""
    alerts = []
    for signal, rate in sorted(rates.items()):
        if rate["total"] >= min_calls and rate["error_rate"] >= threshold:
            alerts.append(
                Alert(
                    f"events.errors:{signal}",
                    Severity.ERROR,
                    f"receivers of {signal} failed {rate['failures']:.0f} of {rate['total']:.0f} "
                    f"times in 5 minutes ({rate['error_rate']:.0%}, threshold {threshold:.0%})",
                    dict(rate),
                )
            )
    return alerts
