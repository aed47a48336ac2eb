"""The queue monitor on beat: every queue's length, oldest wait and consumers, with alerts.

Each run stores a snapshot in Redis (for the health page) and raises an alert when a queue is
longer than ``RELAY_MONITORING_QUEUE_MAX_LENGTH``, when its oldest message has waited longer than
``RELAY_MONITORING_QUEUE_MAX_AGE``, or when it holds messages but no live worker consumes it.
Alerts are de-duplicated across runs and processes (``RELAY_MONITORING_ALERT_DEDUP_SECONDS``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from relay import catalog
from relay.monitoring.alerts import AlertManager
from relay.monitoring.queues import QueueThresholds, evaluate
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
    sent = manager.raise_all(evaluate(statuses, thresholds))
    return {
        "at": now,
        "queues": {s.name: s.as_dict() for s in statuses},
        "alerts": [alert.key for alert in sent],
    }


@relay_task(catalog.SNAPSHOT_QUEUES)
def snapshot_queues(self: RelayTask) -> dict[str, Any]:
    """Record each queue's length and oldest age under ``relay:queues:snapshot``; alert."""
    return check_queues(self.runtime)
