"""The baseline: a plain Celery app with one task doing what ``relay.ping`` does.

Started by ``bench_tasks`` as ``celery -A bench.plain_app worker``; broker and backend come from
``BENCH_BROKER`` / ``BENCH_BACKEND`` so both sides use the same Redis.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from celery import Celery

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


@app.task(name="plain.ping")
def ping(message: str = "ping") -> dict[str, Any]:
    return {"pong": message, "worker": socket.gethostname(), "pid": os.getpid()}
