"""Queue lengths through kombu, so the same code reads Redis lists and RabbitMQ queues."""

from __future__ import annotations

import json
from typing import Any

import redis
from kombu.exceptions import ChannelError

from relay.tasks.catalog import queue_names

SNAPSHOT_KEY = "relay:queues:snapshot"


class QueueMonitor:
    """Reads queue lengths from the broker and keeps the latest snapshot in Redis."""

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

    def store(self, lengths: dict[str, int], *, at: float) -> None:
        """Keep the snapshot for the health page."""
        self.redis.set(SNAPSHOT_KEY, json.dumps({"at": at, "lengths": lengths}), ex=3600)

    def latest(self) -> dict[str, Any] | None:
        """The last stored snapshot, if any."""
        raw = self.redis.get(SNAPSHOT_KEY)
        return json.loads(str(raw)) if raw else None
