"""Worker presence: each worker keeps a short-lived Redis key naming the queues it consumes.

Health checks read these keys instantly instead of broadcasting to workers and waiting. A worker
killed with SIGKILL simply stops refreshing its key, which expires after ``ttl`` seconds.
"""

from __future__ import annotations

import json
import os
import threading
import time

import redis

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


class PresenceHeartbeat:
    """Background thread that re-announces a worker every ``ttl / 3`` seconds until stopped."""

    def __init__(self, presence: WorkerPresence, hostname: str, queues: list[str]) -> None:
        self.presence = presence
        self.hostname = hostname
        self.queues = queues
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="relay-presence", daemon=True)

    def start(self) -> None:
        self.presence.announce(self.hostname, self.queues)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.presence.withdraw(self.hostname)

    def _run(self) -> None:
        interval = max(self.presence.ttl / 3, 0.5)
        while not self._stop.wait(interval):
            try:
                self.presence.announce(self.hostname, self.queues)
            except redis.RedisError:
                # Redis is briefly away; the next beat tries again before the key expires.
                continue
