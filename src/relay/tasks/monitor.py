"""Periodic queue snapshot: length of every queue, kept in Redis for the health page and alerts."""

from __future__ import annotations

import time

from celery import shared_task

from relay.monitoring.queues import QueueMonitor
from relay.tasks.base import RelayTask


@shared_task(name="relay.monitor.snapshot_queues", base=RelayTask, bind=True)
def snapshot_queues(self: RelayTask) -> dict[str, int]:
    """Record each queue's length under ``relay:queues:snapshot`` and return it."""
    monitor = QueueMonitor(self.runtime.celery, self.runtime.redis)
    lengths = monitor.lengths()
    monitor.store(lengths, at=time.time())
    return lengths
