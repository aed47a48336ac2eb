"""Task metrics shared by every worker process, exported at the API's ``/metrics``.

Prefork children cannot each serve Prometheus, so each process adds its counts to Redis hashes in
batches (``relay:taskstats:count`` and ``relay:taskstats:duration``), and ``TaskStatsCollector``
reads them at scrape time: ``relay_tasks_total{task,queue,state}`` and the histogram
``relay_task_duration_seconds{task,queue}``.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Any

import redis
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from relay.background import Background, Batcher

COUNT_KEY = "relay:taskstats:count"
DURATION_KEY = "relay:taskstats:duration"
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_SEP = "|"


def _add(old: list[float], new: list[float]) -> list[float]:
    return [a + b for a, b in zip(old, new, strict=True)]


class TaskStats:
    """Counts task outcomes and durations, flushed to Redis every ``interval`` seconds."""

    def __init__(
        self, client: redis.Redis, interval: float = 0.5, *, background: Background | None = None
    ) -> None:
        self.redis = client
        self._counts: Batcher[str, list[float]] = Batcher(
            "task-counts", self._write_counts, interval=interval, merge=_add, background=background
        )
        self._durations: Batcher[str, list[float]] = Batcher(
            "task-durations",
            self._write_durations,
            interval=interval,
            merge=_add,
            background=background,
        )

    def count(self, task: str, queue: str, state: str) -> None:
        self._counts.add(_SEP.join((task, queue, state)), [1.0])

    def observe(self, task: str, queue: str, seconds: float) -> None:
        # One slot per bucket (non-cumulative), then the sum and the count.
        slots = [0.0] * (len(BUCKETS) + 3)
        slots[bisect.bisect_left(BUCKETS, seconds)] = 1.0
        slots[-2] = seconds
        slots[-1] = 1.0
        self._durations.add(_SEP.join((task, queue)), slots)

    def flush(self) -> None:
        self._counts.flush()
        self._durations.flush()

    def _write_counts(self, batch: dict[str, list[float]]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for field, (n,) in batch.items():
            pipe.hincrby(COUNT_KEY, field, int(n))
        pipe.execute()

    def _write_durations(self, batch: dict[str, list[float]]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for prefix, slots in batch.items():
            for index, value in enumerate(slots):
                if value:
                    pipe.hincrbyfloat(DURATION_KEY, f"{prefix}{_SEP}{index}", value)
        pipe.execute()


class TaskStatsCollector(Collector):
    """Prometheus collector reading the task counters from Redis at scrape time."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def collect(self) -> Iterator[Any]:
        counts = CounterMetricFamily(
            "relay_tasks",
            "Task outcomes by task, queue and state",
            labels=["task", "queue", "state"],
        )
        try:
            raw_counts = self.redis.hgetall(COUNT_KEY)
            raw_durations = self.redis.hgetall(DURATION_KEY)
        except redis.RedisError:
            return
        for field, value in sorted(raw_counts.items()):
            task, queue, state = str(field).split(_SEP)
            counts.add_metric([task, queue, state], float(value))
        yield counts
        histogram = HistogramMetricFamily(
            "relay_task_duration_seconds", "Task run time", labels=["task", "queue"]
        )
        series: dict[tuple[str, str], dict[int, float]] = {}
        for field, value in raw_durations.items():
            task, queue, slot = str(field).split(_SEP)
            series.setdefault((task, queue), {})[int(slot)] = float(value)
        for (task, queue), slots in sorted(series.items()):
            cumulative, buckets = 0.0, []
            for index, bound in enumerate((*BUCKETS, float("inf"))):
                cumulative += slots.get(index, 0.0)
                buckets.append((str(bound) if bound != float("inf") else "+Inf", cumulative))
            histogram.add_metric([task, queue], buckets, slots.get(len(BUCKETS) + 1, 0.0))
        yield histogram
