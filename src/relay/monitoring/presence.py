"""Worker presence: each worker keeps a short-lived Redis key naming the queues it consumes.

Health checks read these keys instantly instead of broadcasting to workers and waiting. A worker
killed with SIGKILL simply stops refreshing its key, which expires after ``ttl`` seconds.
"""

from __future__ import annotations

import json
import os
import time

import redis

from relay.background import Background

PREFIX = "relay:worker:"


class WorkerPresence:
    """Announce and list live workers."""

    def __init__(self, client: redis.Redis, ttl: int) -> None:
        self.redis = client
        self.ttl = ttl

    def announce(self, hostname: str, queues: list[str]) -> None:
        """Mark ``hostname`` alive for ``ttl`` seconds, consuming ``queues``."""
        value = json.dumps({"queues": sorted(queues), "pid": os.getpid(), "seen": time.time()})
        self.redis.set(PREFIX + hostname, value, ex=self.ttl)

    def withdraw(self, hostname: str) -> None:
        """Remove ``hostname`` at a clean shutdown."""
        self.redis.delete(PREFIX + hostname)

    def live(self) -> dict[str, list[str]]:
        """hostname -> consumed queues, for every worker whose key has not expired."""
        workers: dict[str, list[str]] = {}
        keys = list(self.redis.scan_iter(match=PREFIX + "*", count=200))
        if not keys:
            return workers
        for key, raw in zip(keys, self.redis.mget(keys), strict=True):
            if raw:
                workers[str(key)[len(PREFIX) :]] = list(json.loads(str(raw))["queues"])
        return workers


def heartbeats(presence: WorkerPresence) -> dict[str, tuple[list[str], float]]:
    """hostname -> (consumed queues, epoch seconds of its last announcement), live workers only."""
    found: dict[str, tuple[list[str], float]] = {}
    keys = list(presence.redis.scan_iter(match=PREFIX + "*", count=200))
    if not keys:
        return found
    for key, raw in zip(keys, presence.redis.mget(keys), strict=True):
        if raw:
            value = json.loads(str(raw))
            found[str(key)[len(PREFIX) :]] = (list(value["queues"]), float(value.get("seen", 0)))
    return found


class PresenceHeartbeat:
    """Re-announces a worker every ``ttl / 3`` seconds (on a ``Periodic``) until stopped."""

    def __init__(
        self,
        presence: WorkerPresence,
        hostname: str,
        queues: list[str],
        background: Background | None = None,
    ) -> None:
        self.presence = presence
        self.hostname = hostname
        self.queues = queues
        owner = background if background is not None else Background()
        self._job = owner.periodic("presence", self._announce, max(presence.ttl / 3, 0.5))

    def start(self) -> None:
        self.presence.announce(self.hostname, self.queues)
        self._job.ensure()

    def stop(self) -> None:
        self._job.stop(timeout=5)
        self.presence.withdraw(self.hostname)

    def _announce(self) -> None:
        try:
            self.presence.announce(self.hostname, self.queues)
        except redis.RedisError:
            # Redis is briefly away; the next beat tries again before the key expires.
            return
