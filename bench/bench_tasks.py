"""No-op tasks through relay against raw Celery, same Redis, same pool and prefetch.

relay's task is ``relay.canary``: a task record per transition, the retry policy around the
call, and its effect applied once per idempotency key (a processed-key row). The baseline is a
plain Celery no-op sent with ``apply_async``. Measured in the same run:

- enqueue rate: relay publishing through the outbox (one transaction per task, the crash-safe
  path) and directly (``send_task`` with the idempotency key header), against ``apply_async``;
- drain rate: N tasks queued up front, time until every one has finished;
- enqueue-to-start latency at a steady 50 tasks/s (p50/p99), from a start probe both workers load.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

import redis
from sqlalchemy import func, select

from bench.common import Row, bench_runtime
from relay.adapters.broker import celery_redis_url
from relay.models import ProcessedKey, TaskRecord, TaskStatus
from relay.runtime import Runtime

TASKS = int(os.environ.get("BENCH_TASKS", "5000"))
LATENCY_TASKS = int(os.environ.get("BENCH_LATENCY_TASKS", "250"))
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


def _wait(condition: Any, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark did not finish")
        time.sleep(0.05)


def _relay_done(runtime: Runtime, prefix: str) -> int:
    with runtime.db.session() as session:
        query = select(func.count()).where(ProcessedKey.idempotency_key.like(prefix + "%"))
        return int(session.scalar(query) or 0)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


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
            BENCH_PROBE="1",
        )
        from celery import Celery

        plain = Celery("plain-client", broker=url, backend=url)
        plain.conf.task_default_queue = "plain_bench"
        relay_argv = [sys.executable, "-m", "relay", "worker", "-Q", "monitor",
                      "-c", str(CONCURRENCY), "-I", "bench.latency_probe"]  # fmt: skip
        plain_argv = [sys.executable, "-m", "celery", "-A", "bench.plain_app", "worker",
                      "-Q", "plain_bench", "-c", str(CONCURRENCY), "--without-mingle",
                      "--without-gossip", "-l", "WARNING"]  # fmt: skip

        def relay_outbox(label: str) -> str:
            with runtime.db.transaction() as session:
                row = runtime.outbox.enqueue(
                    session, "relay.canary", args=[label], idempotency_key=label
                )
            return row.id

        def relay_direct(label: str) -> str:
            task_id = str(uuid.uuid4())
            runtime.celery.send_task(
                "relay.canary", args=[label], task_id=task_id, queue="monitor",
                headers={"idempotency_key": label}, ignore_result=True,
            )  # fmt: skip
            return task_id

        def plain_send(label: str) -> str:
            return str(plain.send_task("plain.noop", args=[label], ignore_result=True).id)

        results: dict[str, list[float]] = {}

        def enqueue_rate(fn: Any, prefix: str, n: int) -> float:
            started = time.perf_counter()
            for i in range(n):
                fn(f"{prefix}{i}")
            return n / (time.perf_counter() - started)

        # Enqueue rates with no worker running (nothing else competes for the machine).
        for _ in range(rounds):
            tag = uuid.uuid4().hex[:6]
            results.setdefault("outbox", []).append(enqueue_rate(relay_outbox, f"o{tag}-", 1000))
            results.setdefault("direct", []).append(enqueue_rate(relay_direct, f"d{tag}-", 1000))
            results.setdefault("plain", []).append(enqueue_rate(plain_send, f"p{tag}-", 1000))
        probe.delete("monitor", "plain_bench")

        # Drain: N queued up front, then the worker starts; time from its first task to the last.
        def drain(argv: list[str], send: Any, done: Any, prefix: str) -> float:
            probe.delete("bench:starts")
            for i in range(TASKS):
                send(f"{prefix}{i}")
            worker = _start(argv, env)
            try:
                _wait(lambda: probe.hlen("bench:starts") > 0)
                first = min(float(v) for v in probe.hvals("bench:starts"))
                _wait(lambda: done(prefix) >= TASKS)
                return TASKS / (time.time() - first)
            finally:
                _stop(worker)

        for _ in range(rounds):
            tag = uuid.uuid4().hex[:6]
            results.setdefault("relay_drain", []).append(
                drain(relay_argv, relay_direct, lambda p: _relay_done(runtime, p), f"r{tag}-")
            )
            results.setdefault("plain_drain", []).append(
                drain(plain_argv, plain_send,
                      lambda p: probe.hlen("bench:starts") if probe.llen("plain_bench") == 0
                      else 0, f"q{tag}-")
            )  # fmt: skip

        # Latency at a steady 50 tasks/s with the worker running.
        def latency(argv: list[str], send: Any) -> list[float]:
            probe.delete("bench:starts")
            worker = _start(argv, env)
            sent: dict[str, float] = {}
            try:
                time.sleep(3)  # let the worker come up before the clock starts
                for i in range(LATENCY_TASKS):
                    due = time.perf_counter() + 1 / 50
                    task_id = send(f"l{uuid.uuid4().hex[:8]}-{i}")
                    sent[task_id] = time.time()
                    time.sleep(max(0.0, due - time.perf_counter()))
                _wait(lambda: probe.hlen("bench:starts") >= LATENCY_TASKS, timeout=60)
                starts = {
                    str(k, "utf-8"): float(v) for k, v in probe.hgetall("bench:starts").items()
                }
                return [(starts[t] - s) * 1000 for t, s in sent.items() if t in starts]
            finally:
                _stop(worker)

        relay_latency = latency(relay_argv, relay_direct)
        plain_latency = latency(plain_argv, plain_send)
        with runtime.db.session() as session:
            dead = session.scalar(select(func.count()).where(TaskRecord.status == TaskStatus.DEAD))
        assert not dead, "benchmark tasks failed"
        probe.close()

    med = statistics.median
    database = "PostgreSQL" if os.environ.get("RELAY_DATABASE_URL") else "SQLite"
    return [
        Row("enqueue, outbox (own transaction each)", med(results["outbox"]), med(results["plain"]),
            "/s", True, f"crash-safe path; {database}; baseline: plain apply_async"),
        Row("enqueue, direct (send_task + key header)", med(results["direct"]),
            med(results["plain"]), "/s", True, "baseline: plain apply_async"),
        Row(f"drain {TASKS} no-op tasks, {CONCURRENCY} processes", med(results["relay_drain"]),
            med(results["plain_drain"]), "/s", True,
            f"relay: record + retry policy + idempotency ({database}); prefork, prefetch 1"),
        Row("enqueue→start p50 at 50/s", _percentile(relay_latency, 0.5),
            _percentile(plain_latency, 0.5), "ms", False, "start probe in both workers"),
        Row("enqueue→start p99 at 50/s", _percentile(relay_latency, 0.99),
            _percentile(plain_latency, 0.99), "ms", False, ""),
    ]  # fmt: skip
