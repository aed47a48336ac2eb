"""Task throughput: ``relay.ping`` on a relay worker against the same task on plain Celery.

Both workers are real prefork workers with the same concurrency, started as subprocesses on the
same Redis. Measured: publishing N tasks (enqueue rate) and the time until every result is in
(end-to-end rate).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from statistics import median as med
from typing import Any

from celery.result import ResultSet

from bench.common import Row, bench_runtime
from relay.extensions.ext_celery import celery_redis_url

TASKS = int(os.environ.get("BENCH_TASKS", "2000"))
CONCURRENCY = 2


def _start(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _wait_ready(celery: Any, task: str, queue: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            celery.send_task(task, args=["warm-up"], queue=queue).get(timeout=2)
            return
        except Exception:
            continue
    raise RuntimeError(f"worker for {task} did not start")


def _measure(celery: Any, task: str, queue: str) -> tuple[float, float]:
    started = time.perf_counter()
    results = [celery.send_task(task, args=["bench"], queue=queue) for _ in range(TASKS)]
    enqueued = time.perf_counter()
    ResultSet(results, app=celery).join_native(timeout=600)
    finished = time.perf_counter()
    return TASKS / (enqueued - started), TASKS / (finished - started)


def run(rounds: int) -> list[Row]:
    with bench_runtime() as (_, runtime):
        url = celery_redis_url(runtime.settings, runtime.redis_url)
        env = dict(
            os.environ,
            RELAY_REDIS_URL=runtime.redis_url,
            RELAY_VAR_DIR=str(runtime.settings.var_dir),
            RELAY_LOG_LEVEL="WARNING",
            BENCH_BROKER=url,
            BENCH_BACKEND=url,
        )
        env.setdefault("RELAY_DATABASE_URL", runtime.settings.database_url)
        from celery import Celery

        plain = Celery("plain-client", broker=url, backend=url)
        relay_worker = _start(
            [sys.executable, "-m", "relay", "worker", "-Q", "monitor", "-c", str(CONCURRENCY)], env
        )
        plain_worker = _start(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "bench.plain_app",
                "worker",
                "-Q",
                "plain_bench",
                "-c",
                str(CONCURRENCY),
                "--without-mingle",
                "--without-gossip",
                "-l",
                "WARNING",
            ],
            env,
        )
        try:
            _wait_ready(runtime.celery, "relay.ping", "monitor")
            _wait_ready(plain, "plain.ping", "plain_bench")
            relay_runs = [_measure(runtime.celery, "relay.ping", "monitor") for _ in range(rounds)]
            plain_runs = [_measure(plain, "plain.ping", "plain_bench") for _ in range(rounds)]
        finally:
            _stop(relay_worker)
            _stop(plain_worker)

    return [
        Row(
            f"enqueue {TASKS} tasks (tasks/s)",
            med([r[0] for r in relay_runs]),
            med([r[0] for r in plain_runs]),
            "/s",
            higher_is_better=True,
            note="baseline: plain Celery app, same Redis",
        ),
        Row(
            f"enqueue + drain {TASKS} tasks, {CONCURRENCY} processes (tasks/s)",
            med([r[1] for r in relay_runs]),
            med([r[1] for r in plain_runs]),
            "/s",
            higher_is_better=True,
            note="prefork workers, acks_late, prefetch 1 on both sides",
        ),
    ]
