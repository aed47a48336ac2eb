"""Visibility: per-tenant Prometheus metrics read from the scheduler's state at scrape time.

The state lives in Redis, so any process (the API's ``/metrics``) reports every worker's tenants
without multiprocess Prometheus plumbing. Tenant labels are capped: the ``metrics_top_tenants``
busiest tenants of a queue are named, the rest are summed under ``tenant="other"``, so a platform
with many thousands of tenants does not explode the series count. A named tenant's label is
never its raw id: a configured name (``RELAY_MONITORING_TENANT_LABELS``) or a short hash.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from relay.scheduling.tenant_queue import TenantQueue, TenantState, WaitHistogram

OTHER = "other"
log = logging.getLogger(__name__)


def tenant_snapshot(queue: TenantQueue, name: str | None = None) -> list[TenantState]:
    """Every active tenant on every queue (or queue ``name``), busiest first."""
    names = [name] if name else queue.queues()
    states = [state for q in names for state in queue.snapshot(q)]
    return sorted(states, key=lambda s: (-(s.waiting + s.running), s.queue, s.tenant))


def top_tenants(load: dict[str, float], limit: int) -> set[str]:
    """The ``limit`` tenants with the largest load (ties by id, so the choice is stable)."""
    ranked = sorted(load.items(), key=lambda kv: (-kv[1], kv[0]))
    return {tenant for tenant, _ in ranked[:limit]}


class TenantLabels:
    """The label a tenant gets in metrics: a configured name, else ``t-`` and 10 hex digits of
    its id's SHA-256 (stable, short, and not the id itself)."""

    def __init__(self, names: Mapping[str, str] | None = None) -> None:
        self.names = dict(names or {})

    def __call__(self, tenant: str) -> str:
        named = self.names.get(tenant)
        if named:
            return named
        return "t-" + hashlib.sha256(tenant.encode()).hexdigest()[:10]


def _as_is(tenant: str) -> str:
    return tenant


class SchedulingCollector(Collector):
    """Collector of the scheduler's per-tenant gauges, wait histogram and event counters."""

    def __init__(
        self,
        queue: TenantQueue,
        top: int,
        buckets: Sequence[float],
        label: Callable[[str], str] = _as_is,
    ) -> None:
        """``label`` turns a tenant id into its label value (``TenantLabels`` in relay)."""
        self.queue = queue
        self.top = top
        self.buckets = tuple(buckets)
        self.label = label

    def describe(self) -> Iterable[Metric]:
        """As ``Collector.describe``."""
        # Declared without samples: registering must not need Redis.
        return list(self._families())

    def collect(self) -> Iterator[Metric]:
        """As ``Collector.collect``."""
        waiting, running, vruntime, wait, events = self._families()
        try:
            for name in self.queue.queues():
                self._states(name, self.queue.snapshot(name), waiting, running, vruntime)
                self._histograms(name, self.queue.wait_histograms(name), wait)
                for event, count in sorted(self.queue.stats(name).items()):
                    events.add_metric([name, event], count)
        except Exception:
            # A scrape must not fail because Redis is down: the health check reports that.
            log.warning("scheduler metrics unavailable", exc_info=True)
            waiting, running, vruntime, wait, events = self._families()
        yield from (waiting, running, vruntime, wait, events)

    def _families(
        self,
    ) -> tuple[
        GaugeMetricFamily,
        GaugeMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        CounterMetricFamily,
    ]:
        labels = ["queue", "tenant"]
        return (
            GaugeMetricFamily(
                "relay_scheduler_waiting", "Tasks waiting for their tenant's turn", labels=labels
            ),
            GaugeMetricFamily(
                "relay_scheduler_running",
                "Slots held (released to Celery or running) per tenant",
                labels=labels,
            ),
            GaugeMetricFamily(
                "relay_scheduler_vruntime",
                "Virtual runtime (work / weight) of the named tenants",
                labels=labels,
            ),
            HistogramMetricFamily(
                "relay_scheduler_queue_wait_seconds",
                "Time from submit to first start of a task",
                labels=labels,
            ),
            CounterMetricFamily(
                "relay_scheduler_events", "Scheduler events by kind", labels=["queue", "event"]
            ),
        )

    def _states(
        self,
        name: str,
        states: list[TenantState],
        waiting: GaugeMetricFamily,
        running: GaugeMetricFamily,
        vruntime: GaugeMetricFamily,
    ) -> None:
        named = top_tenants({s.tenant: s.waiting + s.running for s in states}, self.top)
        other_waiting = other_running = 0
        for state in states:
            if state.tenant in named:
                label = self.label(state.tenant)
                waiting.add_metric([name, label], state.waiting)
                running.add_metric([name, label], state.running)
                vruntime.add_metric([name, label], state.vruntime)
            else:
                other_waiting += state.waiting
                other_running += state.running
        if len(states) > len(named):
            waiting.add_metric([name, OTHER], other_waiting)
            running.add_metric([name, OTHER], other_running)

    def _histograms(
        self, name: str, histograms: dict[str, WaitHistogram], family: HistogramMetricFamily
    ) -> None:
        # Ranked by observations so far, which only grows: the named set rarely changes.
        named = top_tenants({t: h.count for t, h in histograms.items()}, self.top)
        other = [0] * (len(self.buckets) + 1)
        other_sum = 0.0
        for tenant, hist in histograms.items():
            if tenant in named:
                family.add_metric(
                    [name, self.label(tenant)], self._cumulative(hist.buckets), hist.total
                )
            else:
                other = [a + b for a, b in zip(other, hist.buckets, strict=True)]
                other_sum += hist.total
        if len(histograms) > len(named):
            family.add_metric([name, OTHER], self._cumulative(tuple(other)), other_sum)

    def _cumulative(self, counts: tuple[int, ...]) -> list[tuple[str, float]]:
        bounds = [*(repr(b) for b in self.buckets), "+Inf"]
        total = 0
        out: list[tuple[str, float]] = []
        for bound, count in zip(bounds, counts, strict=True):
            total += count
            out.append((bound, total))
        return out


def register_metrics(
    registry: CollectorRegistry,
    queue: TenantQueue,
    top: int,
    buckets: Sequence[float],
    label: Callable[[str], str] = _as_is,
) -> SchedulingCollector:
    """Register the scheduler's collector on ``registry`` (e.g. ``runtime.metrics.registry``)."""
    collector = SchedulingCollector(queue, top, buckets, label)
    registry.register(collector)
    return collector
