"""Worker side of ``bench_fairness``: one task, run with or without the fair dispatcher.

Started as ``celery -A bench.fairness.worker_app worker``. Messages the dispatcher released carry
the ``relay_fair`` header and run under ``run_fairly`` (gate, heartbeat, charge, release next);
raw ``send_task`` messages run as they are. Each run appends a JSON record to a Redis list, so the
driver sees start times and run times without a result backend.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import redis
from celery import Celery

from relay.config import TenancySettings
from relay.scheduling.dispatcher import FairDispatcher
from relay.scheduling.gate import run_fairly
from relay.scheduling.settings import SchedulingSettings
from relay.scheduling.tenant_queue import RedisTenantQueue

QUEUE = "fair_bench"


def scheduling_settings() -> SchedulingSettings:
    """The settings the driver and the workers share (defaults, own key prefix)."""
    return SchedulingSettings(
        key_prefix=os.environ.get("BENCH_FAIR_PREFIX", "bench:fair"),
        window=int(os.environ.get("BENCH_FAIR_WINDOW", "4")),
    )


app = Celery("fair-bench", broker=os.environ.get("BENCH_BROKER", "redis://127.0.0.1:6379/14"))
app.conf.update(
    task_default_queue=QUEUE,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    task_ignore_result=True,
    worker_prefetch_multiplier=1,
    worker_hijack_root_logger=False,
)
client = redis.Redis.from_url(
    os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/14"), decode_responses=True
)
dispatcher = FairDispatcher(
    RedisTenantQueue(client, scheduling_settings()), app, scheduling_settings(), TenancySettings()
)


@app.task(name="bench.fair_work", bind=True)
def fair_work(self: Any, log: str, tenant: str, submitted_at: float, sleep_ms: float) -> None:
    """Sleep ``sleep_ms`` (the work) and record when it started."""

    def body() -> None:
        started = time.time()
        time.sleep(sleep_ms / 1000)
        record = {"t": tenant, "sub": submitted_at, "start": started, "run": time.time() - started}
        client.rpush(log, json.dumps(record))

    run_fairly(dispatcher, self.request, body)
