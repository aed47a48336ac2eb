"""Queue lengths through kombu, so the same code reads Redis lists and RabbitMQ queues.

On the Redis broker the monitor also reads the age of each queue's oldest message: kombu LPUSHes
and BRPOPs, so the oldest waiting message is the list's tail (index -1). Its age comes from the
``sent_at`` header that the ``SentAt`` task middleware adds at publish (or, for a message published
without it, from its ``eta``). RabbitMQ cannot be peeked without consuming, so ages are unknown
there (None) and only lengths are checked.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import redis
from kombu.exceptions import ChannelError

from relay.catalog import queue_names
from relay.monitoring.alerts import Alert, Severity

SNAPSHOT_KEY = "relay:queues:snapshot"
SENT_AT_HEADER = "sent_at"


@dataclass(frozen=True)
class QueueStatus:
    """One queue at one moment: waiting messages, oldest wait, live consumers."""

    name: str
    length: int
    oldest_age: float | None
    consumers: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["consumers"] = list(self.consumers)
        return data


@dataclass(frozen=True)
class QueueThresholds:
    """When the monitor alerts."""

    max_length: int
    max_age: float


def evaluate(statuses: list[QueueStatus], thresholds: QueueThresholds) -> list[Alert]:
    """The alerts a set of queue statuses calls for (pure: no I/O)."""
    alerts: list[Alert] = []
    for status in statuses:
        details = status.as_dict()
        if status.length and not status.consumers:
            alerts.append(
                Alert(
                    f"queue.no_consumer:{status.name}",
                    Severity.CRITICAL,
                    f"queue {status.name} has {status.length} waiting message(s) and no consumer",
                    details,
                )
            )
        if status.length > thresholds.max_length:
            alerts.append(
                Alert(
                    f"queue.backlog:{status.name}",
                    Severity.WARNING,
                    f"queue {status.name} has {status.length} waiting messages "
                    f"(threshold {thresholds.max_length})",
                    details,
                )
            )
        if status.oldest_age is not None and status.oldest_age > thresholds.max_age:
            alerts.append(
                Alert(
                    f"queue.stale:{status.name}",
                    Severity.WARNING,
                    f"oldest message in queue {status.name} has waited {status.oldest_age:.0f}s "
                    f"(threshold {thresholds.max_age:.0f}s)",
                    details,
                )
            )
    return alerts


def message_age(message: Mapping[str, Any], now: float) -> float | None:
    """Seconds a raw kombu message has been waiting, or None when it carries no timestamp.

    A message with an ``eta`` only starts waiting at its eta, whatever its ``sent_at``.
    """
    headers = message.get("headers") or {}
    since: float | None = None
    sent_at = headers.get(SENT_AT_HEADER)
    if isinstance(sent_at, int | float):
        since = float(sent_at)
    eta = headers.get("eta")
    if isinstance(eta, str):
        try:
            due = datetime.fromisoformat(eta).timestamp()
        except ValueError:
            due = None
        if due is not None:
            since = due if since is None else max(since, due)
    if since is None:
        return None
    return max(0.0, now - since)


class QueueMonitor:
    """Reads queue lengths (and ages) from the broker and keeps the latest snapshot in Redis."""

    def __init__(self, celery: Any, client: redis.Redis) -> None:
        self.celery = celery
        self.redis = client

    def lengths(self) -> dict[str, int]:
        """Messages waiting in each catalogued queue."""
        result: dict[str, int] = {}
        with self.celery.connection_for_read() as conn:
            channel = conn.default_channel
            for name in queue_names():
                try:
                    _, count, _ = channel.queue_declare(queue=name, passive=True)
                except ChannelError:
                    # The broker has no such queue yet: nothing was ever sent to it.
                    count = 0
                    channel = conn.channel()
                result[name] = int(count)
        return result

    def length(self, queue: str) -> int:
        """Messages waiting in one queue (0 when the broker has never seen it)."""
        with self.celery.connection_for_read() as conn:
            try:
                _, count, _ = conn.default_channel.queue_declare(queue=queue, passive=True)
            except ChannelError:
                return 0
            return int(count)

    def oldest_ages(self, now: float | None = None) -> dict[str, float | None]:
        """Seconds the oldest waiting message of each queue has waited (None: empty or unknown)."""
        now = time.time() if now is None else now
        ages: dict[str, float | None] = dict.fromkeys(queue_names())
        with self.celery.connection_for_read() as conn:
            channel = conn.default_channel
            q_for_pri = getattr(channel, "_q_for_pri", None)
            if q_for_pri is None:
                return ages  # not kombu's Redis transport: no way to peek without consuming
            steps = sorted(set(getattr(channel, "priority_steps", [0])))
            with channel.conn_or_acquire() as client:
                for name in ages:
                    keys = [q_for_pri(name, pri) for pri in steps]
                    with client.pipeline() as pipe:
                        for key in keys:
                            pipe.lindex(key, -1)
                        tails = pipe.execute()
                    found = [age for raw in tails if raw if (age := _age_of(raw, now)) is not None]
                    ages[name] = max(found) if found else None
        return ages

    def statuses(
        self, consumers: Mapping[str, list[str]], now: float | None = None
    ) -> list[QueueStatus]:
        """Every catalogued queue's length, oldest age and live consumers.

        ``consumers`` maps a worker's name to the queues it consumes (``WorkerPresence.live()``).
        """
        now = time.time() if now is None else now
        lengths = self.lengths()
        ages = self.oldest_ages(now)
        return [
            QueueStatus(
                name=name,
                length=lengths.get(name, 0),
                oldest_age=ages.get(name) if lengths.get(name, 0) else None,
                consumers=tuple(sorted(h for h, qs in consumers.items() if name in qs)),
            )
            for name in queue_names()
        ]

    def store(
        self,
        lengths: dict[str, int],
        *,
        at: float,
        ages: Mapping[str, float | None] | None = None,
    ) -> None:
        """Keep the snapshot for the health page."""
        snapshot: dict[str, Any] = {"at": at, "lengths": lengths}
        if ages is not None:
            snapshot["oldest_ages"] = dict(ages)
        self.redis.set(SNAPSHOT_KEY, json.dumps(snapshot), ex=3600)

    def latest(self) -> dict[str, Any] | None:
        """The last stored snapshot, if any."""
        raw = self.redis.get(SNAPSHOT_KEY)
        return json.loads(str(raw)) if raw else None


def _age_of(raw: bytes | str, now: float) -> float | None:
    try:
        message = json.loads(raw)
    except ValueError:
        return None
    return message_age(message, now) if isinstance(message, dict) else None
