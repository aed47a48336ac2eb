"""Worker memory over many tasks (``python -m bench rss``; long, so not part of the default run).

A relay worker (prefork, 2 processes) and a plain Celery worker each drain ``BENCH_RSS_TASKS``
no-op tasks (default 100,000), fed in chunks so that the queue stays short. The resident memory
of the worker (main process and pool children) is read after the first tenth of the tasks (warm:
imports done, pools filled) and at the end; the row is the growth between the two (goal < 10 %).
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable

import psutil
import redis

from bench.bench_tasks import CONCURRENCY, PLAIN_QUEUE, _start, _stop, _wait
from bench.common import Row, bench_runtime, load_average
from bench.relay_tasks import NOOP, QUEUE
from relay.adapters.broker import celery_redis_url

TASKS = int(os.environ.get("BENCH_RSS_TASKS", "100000"))
CHUNK = 2000


def _rss(pid: int) -> int:
    main = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [main, *main.children(recursive=True)])


def _done(probe: redis.Redis) -> int:
    return int(probe.get("bench:done") or 0)  # type: ignore[arg-type]


def run(rounds: int) -> list[Row]:
    with bench_runtime() as (_, runtime):
        url = celery_redis_url(runtime.settings, runtime.redis_url)
        probe = redis.Redis.from_url(runtime.redis_url)
        env = dict(
            os.environ,
            RELAY_REDIS_URL=runtime.redis_url,
            RELAY_VAR_DIR=str(runtime.settings.var_dir),
            RELAY_DATABASE_URL=runtime.settings.database_url,
            RELAY_LOG_LEVEL="WARNING",
            BENCH_BROKER=url,
            BENCH_BACKEND=url,
            BENCH_PROBE_REDIS=runtime.redis_url,
            BENCH_DATABASE_URL=runtime.settings.database_url,
            BENCH_PROBE="count",
        )
        from celery import Celery

        plain = Celery("plain-client", broker=url, backend=url)
        plain.conf.update(task_default_queue=PLAIN_QUEUE, task_send_sent_event=True)

        def relay_send(i: int) -> None:
            key = f"rss-{uuid.uuid4().hex}"
            runtime.celery.send_task(
                NOOP.name, args=[i], queue=QUEUE, headers={"idempotency_key": key}
            )

        def plain_send(i: int) -> None:
            plain.send_task("plain.noop", args=[i], queue=PLAIN_QUEUE)

        def growth(argv: list[str], send: Callable[[int], None]) -> tuple[float, float]:
            probe.delete("bench:first", "bench:done", "bench:ready")
            worker = _start(argv, env)
            warm = 0
            try:
                sent = 0
                while sent < TASKS:
                    for i in range(sent, min(TASKS, sent + CHUNK)):
                        send(i)
                    sent = min(TASKS, sent + CHUNK)
                    target = sent - CHUNK // 2  # keep about half a chunk queued
                    _wait(lambda t=target: _done(probe) >= t, what="rss")  # type: ignore[misc]
                    if not warm and sent >= TASKS // 10:
                        warm = _rss(worker.pid)
                _wait(lambda: _done(probe) >= TASKS, what="rss")
                time.sleep(1)  # the last record flush
                end = _rss(worker.pid)
                return warm / 2**20, (end / warm - 1) * 100
            finally:
                _stop(worker)

        relay_argv = [sys.executable, "-m", "relay", "worker", "-Q", QUEUE,
                      "-c", str(CONCURRENCY), "-I", "bench.relay_tasks"]  # fmt: skip
        plain_argv = [sys.executable, "-m", "celery", "-A", "bench.plain_app", "worker",
                      "-Q", PLAIN_QUEUE, "-c", str(CONCURRENCY), "--without-mingle",
                      "--without-gossip", "-l", "WARNING"]  # fmt: skip
        relay_warm, relay_growth = growth(relay_argv, relay_send)
        plain_warm, plain_growth = growth(plain_argv, plain_send)
        probe.close()
    return [
        Row(f"worker RSS growth over {TASKS:,} tasks", relay_growth, plain_growth, "%", False,
            f"warm RSS: relay {relay_warm:.0f} MiB, plain {plain_warm:.0f} MiB; goal < 10 %",
            load_average()),
    ]  # fmt: skip
