"""Imported into both benchmark workers (relay's and plain Celery's): notes when each task starts.

Same code on both sides, so it costs both the same. The start time goes to the Redis hash
``bench:starts`` (task id -> epoch seconds).
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from celery.signals import task_prerun

_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["BENCH_PROBE_REDIS"])
    return _client


@task_prerun.connect(weak=False)
def _started(task_id: str | None = None, **_: Any) -> None:
    if task_id and os.environ.get("BENCH_PROBE") == "1":
        _redis().hset("bench:starts", task_id, time.time())
