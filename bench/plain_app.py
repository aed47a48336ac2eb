"""The baseline: a plain Celery app with no-op tasks, configured like relay's workers.

Started by ``bench_tasks`` as ``celery -A bench.plain_app worker``; broker and backend come from
``BENCH_BROKER`` / ``BENCH_BACKEND`` so both sides use the same Redis.
"""

from __future__ import annotations

import os

from celery import Celery

import bench.latency_probe  # noqa: F401  (same start probe as the relay worker)

app = Celery(
    "plain",
    broker=os.environ.get("BENCH_BROKER", "redis://127.0.0.1:6379/14"),
    backend=os.environ.get("BENCH_BACKEND", "redis://127.0.0.1:6379/14"),
)
app.conf.update(
    task_default_queue="plain_bench",
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    worker_hijack_root_logger=False,
)


@app.task(name="plain.noop")
def noop(label: str = "noop") -> bool:
    return True
