"""Per-minute event counters: how often each signal's receivers succeeded and failed.

``EventCounters`` is the port the bus flushes into and the health check reads from;
``RedisEventCounters`` shares them across processes (hashes ``relay:events:<minute>:<signal>``
with fields ``success``, ``failure``, ``total_ms``; kept 24 h), ``InMemoryEventCounters`` keeps
them in this process (tests, single-process tools).
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Protocol

import redis

log = logging.getLogger(__name__)

COUNTER_PREFIX = "relay:events:"
COUNTER_TTL = 24 * 3600

# (minute, signal) -> [success, failure, total milliseconds]
Counts = Mapping[tuple[int, str], list[float]]


class EventCounters(Protocol):
    """Where the bus adds its per-minute counts, and where they are read back."""

    def add(self, counts: Counts) -> None:
        """Add ``counts``; best effort (a failure is logged, never raised)."""
        ...

    def read(self, minutes: Iterable[int], signals: Iterable[str]) -> dict[str, list[float]]:
        """Totals per signal over ``minutes``: ``[success, failure, total_ms]``."""
        ...


class RedisEventCounters:
    """``EventCounters`` in Redis hashes, one per minute and signal."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def add(self, counts: Counts) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for (minute, name), (success, failure, total_ms) in counts.items():
            key = f"{COUNTER_PREFIX}{minute}:{name}"
            if success:
                pipe.hincrby(key, "success", int(success))
            if failure:
                pipe.hincrby(key, "failure", int(failure))
            pipe.hincrbyfloat(key, "total_ms", total_ms)
            pipe.expire(key, COUNTER_TTL)
        try:
            pipe.execute()
        except Exception:
            # Counters are best effort: never fail a request because Redis blinked.
            log.warning("event counters not flushed", extra={"action": "event.flush_failed"})

    def read(self, minutes: Iterable[int], signals: Iterable[str]) -> dict[str, list[float]]:
        pipe = self.redis.pipeline(transaction=False)
        keys = [(name, minute) for name in signals for minute in minutes]
        for name, minute in keys:
            pipe.hgetall(f"{COUNTER_PREFIX}{minute}:{name}")
        totals: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0.0])
        for (name, _), values in zip(keys, pipe.execute(), strict=True):
            if values:
                row = totals[name]
                row[0] += int(values.get("success", 0))
                row[1] += int(values.get("failure", 0))
                row[2] += float(values.get("total_ms", 0))
        return dict(totals)


class InMemoryEventCounters:
    """``EventCounters`` in this process."""

    def __init__(self) -> None:
        self._counts: dict[tuple[int, str], list[float]] = defaultdict(lambda: [0, 0, 0.0])
        self._lock = threading.Lock()

    def add(self, counts: Counts) -> None:
        with self._lock:
            for key, values in counts.items():
                row = self._counts[key]
                for index, value in enumerate(values):
                    row[index] += value

    def read(self, minutes: Iterable[int], signals: Iterable[str]) -> dict[str, list[float]]:
        wanted = set(minutes)
        names = set(signals)
        totals: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0.0])
        with self._lock:
            for (minute, name), values in self._counts.items():
                if minute in wanted and name in names:
                    row = totals[name]
                    for index, value in enumerate(values):
                        row[index] += value
        return dict(totals)
