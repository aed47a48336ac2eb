"""The queue monitor on beat: every queue's length, oldest wait and consumers, with alerts.

Each run stores a snapshot in Redis (for the health page) and raises an alert when a queue is
longer than ``RELAY_MONITORING_QUEUE_MAX_LENGTH``, when its oldest message has waited longer than
``RELAY_MONITORING_QUEUE_MAX_AGE``, or when it holds messages but no live worker consumes it.
Alerts are de-duplicated across runs and processes (``RELAY_MONITORING_ALERT_DEDUP_SECONDS``);
a queue alert that stops holding is followed by its recovery.

The health check on beat (``check_health``) judges every readiness component, the tenants on the
fair queues (a tenant holding far more than its fair share of slots while others wait, or whose
queue-wait p99 since the last check is above ``RELAY_MONITORING_NOISY_WAIT_P99``) and the event
receivers' error rates; each becomes an alert when it degrades and a recovery when it is over.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from relay import catalog
from relay.monitoring.alerts import Alert, AlertManager
from relay.monitoring.queues import QueueThresholds, evaluate
from relay.monitoring.watch import (
    Watch,
    event_error_alerts,
    health_alerts,
    noisy_neighbours,
    slow_tenants,
)
from relay.scheduling.metrics import TenantLabels, tenant_snapshot
from relay.tasks.base import RelayTask, relay_task

if TYPE_CHECKING:
    from relay.runtime import Runtime


def check_queues(runtime: Runtime, alerts: AlertManager | None = None) -> dict[str, Any]:
    """One monitor pass; returns the snapshot plus the keys of the alerts sent."""
    settings = runtime.settings.monitoring
    monitor = runtime.queues
    now = time.time()
    live = runtime.presence.live()
    statuses = monitor.statuses(live, now)
    monitor.store(
        {s.name: s.length for s in statuses},
        at=now,
        ages={s.name: s.oldest_age for s in statuses},
    )
    thresholds = QueueThresholds(settings.queue_max_length, settings.queue_max_age)
    manager = alerts or AlertManager.from_settings(runtime.settings, runtime.redis)
    sent = Watch(manager, runtime.redis).update("queues", evaluate(statuses, thresholds))
    return {
        "at": now,
        "queues": {s.name: s.as_dict() for s in statuses},
        "alerts": [alert.key for alert in sent if not alert.resolved],
        "resolved": [alert.key for alert in sent if alert.resolved],
    }


@relay_task(catalog.SNAPSHOT_QUEUES)
def snapshot_queues(self: RelayTask) -> dict[str, Any]:
    """Record each queue's length and oldest age under ``relay:queues:snapshot``; alert."""
    return check_queues(self.runtime)


WAITS_KEY = "relay:watch:waits:"


def check_health(runtime: Runtime, alerts: AlertManager | None = None) -> dict[str, Any]:
    """One health pass: components, tenants, event receivers; alerts on every change."""
    settings = runtime.settings.monitoring
    watch = Watch(
        alerts or AlertManager.from_settings(runtime.settings, runtime.redis), runtime.redis
    )
    report = runtime.readiness.ready()
    sent = watch.update("health", health_alerts(report.components))
    sent += watch.update("tenants", _tenant_alerts(runtime))
    rates = runtime.bus.error_rates(window_seconds=300)
    events = event_error_alerts(rates, settings.event_error_rate, settings.event_error_min_calls)
    sent += watch.update("events", events)
    return {
        "status": report.level.value,
        "components": {c.name: c.level.value for c in report.components},
        "alerts": [alert.key for alert in sent if not alert.resolved],
        "resolved": [alert.key for alert in sent if alert.resolved],
    }


def _tenant_alerts(runtime: Runtime) -> list[Alert]:
    settings = runtime.settings
    label = TenantLabels(settings.monitoring.tenant_labels)
    queue = runtime.dispatcher.queue
    found = noisy_neighbours(tenant_snapshot(queue), settings.monitoring.noisy_share, label)
    for name in queue.queues():
        current = queue.wait_histograms(name)
        raw = runtime.redis.get(WAITS_KEY + name)
        previous = json.loads(str(raw)) if raw else {}
        found += slow_tenants(
            name,
            current,
            previous,
            settings.scheduling.wait_buckets,
            settings.monitoring.noisy_wait_p99,
            label,
        )
        counts = {tenant: list(hist.buckets) for tenant, hist in current.items()}
        runtime.redis.set(WAITS_KEY + name, json.dumps(counts), ex=24 * 3600)
    return found


@relay_task(catalog.CHECK_HEALTH)
def check_health_task(self: RelayTask) -> dict[str, Any]:
    """Judge every component, tenant and event receiver; alert when one degrades or recovers."""
    return check_health(self.runtime)
