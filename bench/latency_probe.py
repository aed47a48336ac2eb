"""Imported into both benchmark workers (relay's and plain Celery's): notes starts and finishes.

Same code on both sides, so it costs both the same. With ``BENCH_PROBE=latency`` the start time
of each task goes to the Redis hash ``bench:starts`` (task id -> epoch seconds); with
``BENCH_PROBE=count`` each finished task increments ``bench:done`` and the first start is kept in
``bench:first`` (one command per task each way, both sides alike). ``bench:ready`` counts pool
processes that are up (readiness by probe, not by sleeping).
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from celery.signals import task_postrun, task_prerun, worker_process_init

_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["BENCH_PROBE_REDIS"])
    return _client


def _mode() -> str:
    return os.environ.get("BENCH_PROBE", "")


@worker_process_init.connect(weak=False)
def _ready(**_: Any) -> None:
    global _client
    _client = None  # never share the parent's connection
    if _mode():
        _redis().incr("bench:ready")


@task_prerun.connect(weak=False)
def _started(task_id: str | None = None, **_: Any) -> None:
    mode = _mode()
    if task_id and mode == "latency":
        _redis().hset("bench:starts", task_id, time.time())
    elif mode == "count":
        _redis().set("bench:first", time.time(), nx=True)


@task_postrun.connect(weak=False)
def _finished(**_: Any) -> None:
    if _mode() == "count":
        _redis().incr("bench:done")
