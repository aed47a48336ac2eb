"""Operational metrics read at scrape time from the broker, Redis and the database.

Every value here is shared state (a queue, a table, presence keys), so any process answers the
same: no multiprocess plumbing. A source that is down leaves its families empty for that scrape
(the health check reports the outage) instead of failing the whole scrape.

- ``relay_queue_length{queue}``, ``relay_queue_oldest_age_seconds{queue}`` (Redis broker only)
- ``relay_queue_consumers{queue}`` live workers consuming each queue, ``relay_workers_live``
- ``relay_outbox_pending``, ``relay_outbox_oldest_age_seconds``
- ``relay_dead_letters{reason}`` dead letters stored and not yet replayed
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from relay.adapters.sql import Database
from relay.catalog import queue_names
from relay.models import DeadLetter, OutboxMessage, OutboxStatus, utcnow
from relay.monitoring.presence import WorkerPresence
from relay.monitoring.queues import QueueMonitor

log = logging.getLogger(__name__)


class QueueCollector(Collector):
    """Per Celery queue: waiting messages, the oldest one's age, live consumers."""

    def __init__(self, monitor: QueueMonitor, presence: WorkerPresence) -> None:
        self.monitor = monitor
        self.presence = presence

    def describe(self) -> Iterator[Metric]:
        # Declared without samples: registering must not reach the broker.
        return iter(self._families())

    def collect(self) -> Iterator[Metric]:
        length, age, consumers, live = self._families()
        try:
            lengths = self.monitor.lengths()
            ages = self.monitor.oldest_ages(time.time())
            for name in queue_names():
                length.add_metric([name], lengths.get(name, 0))
                oldest = ages.get(name) if lengths.get(name, 0) else 0.0
                if oldest is not None:
                    age.add_metric([name], oldest)
        except Exception:
            log.warning("queue metrics unavailable", extra={"action": "metrics.queues_failed"})
        try:
            workers = self.presence.live()
            for name in queue_names():
                consumers.add_metric([name], sum(1 for qs in workers.values() if name in qs))
            live.add_metric([], len(workers))
        except Exception:
            log.warning("worker metrics unavailable", extra={"action": "metrics.workers_failed"})
        yield from (length, age, consumers, live)

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, ...]:
        return (
            GaugeMetricFamily("relay_queue_length", "Messages waiting per queue", labels=["queue"]),
            GaugeMetricFamily(
                "relay_queue_oldest_age_seconds",
                "Seconds the oldest waiting message of the queue has waited (0: empty)",
                labels=["queue"],
            ),
            GaugeMetricFamily(
                "relay_queue_consumers", "Live workers consuming the queue", labels=["queue"]
            ),
            GaugeMetricFamily("relay_workers_live", "Workers whose presence key is fresh"),
        )


class StoreCollector(Collector):
    """What waits in the database: outbox backlog and age, dead letters by reason."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def describe(self) -> Iterator[Metric]:
        return iter(self._families())

    def collect(self) -> Iterator[Metric]:
        pending, age, dead = self._families()
        try:
            outbox, letters = self._read()
        except Exception:
            log.warning("store metrics unavailable", extra={"action": "metrics.store_failed"})
            yield from (pending, age, dead)
            return
        count, oldest = outbox
        pending.add_metric([], count)
        age.add_metric([], oldest)
        for reason, n in letters:
            dead.add_metric([reason], n)
        yield from (pending, age, dead)

    def _read(self) -> tuple[tuple[int, float], list[tuple[str, int]]]:
        with self.db.session() as session:
            count, first = session.execute(
                select(func.count(), func.min(OutboxMessage.created_at)).where(
                    OutboxMessage.status == OutboxStatus.PENDING
                )
            ).one()
            rows = session.execute(
                select(DeadLetter.reason, func.count())
                .where(DeadLetter.replayed_at.is_(None))
                .group_by(DeadLetter.reason)
                .order_by(DeadLetter.reason)
            ).all()
        oldest = (utcnow() - _aware(first)).total_seconds() if first is not None else 0.0
        return (int(count or 0), max(0.0, oldest)), [(str(r), int(n)) for r, n in rows]

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, ...]:
        return (
            GaugeMetricFamily("relay_outbox_pending", "Outbox rows committed and not yet sent"),
            GaugeMetricFamily(
                "relay_outbox_oldest_age_seconds",
                "Seconds the oldest pending outbox row has waited (0: none pending)",
            ),
            GaugeMetricFamily(
                "relay_dead_letters",
                "Dead letters stored and not replayed, by reason",
                labels=["reason"],
            ),
        )


def _aware(value: Any) -> Any:
    # SQLite returns naive datetimes; relay stores UTC.
    if getattr(value, "tzinfo", None) is None:
        return value.replace(tzinfo=utcnow().tzinfo)
    return value
