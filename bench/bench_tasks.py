"""Tasks through relay against plain Celery: same Redis, same pool, prefetch, result and event
settings (``bench.plain_app``), measured in the same run with the order alternating per round.

- enqueue: relay's outbox (one transaction per task, the crash-safe path; and 100 tasks per
  transaction with ``enqueue_many``) and relay's direct ``send_task`` against ``apply_async``;
- drain: N tasks queued up front, then the worker starts; rate from its first task start to the
  N-th finish, both counted by the same probe (``bench.latency_probe``), never by scanning
  tables. Two task kinds: a no-op, and a task that writes one row (relay: exactly once per
  idempotency key inside ``effect()``; plain Celery: an at-least-once insert);
- enqueue-to-start latency at a steady 50 tasks/s (p50/p99 of every task), the clock taken
  before the publish call, the worker ready by probe (its pool processes report, and a warm-up
  task ran through each side) before the first timed send. Three sides: relay's raw
  ``send_task``, relay through the fair dispatcher (``dispatcher.submit`` of one tenant: wait
  list, fair order, window, lease, then the send; the worker's gate starts and releases it), and
  plain Celery.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable

import redis
from sqlalchemy import create_engine, func, select, text

from bench.common import Row, bench_runtime, load_average
from bench.relay_tasks import INSERT_ROW, NOOP, QUEUE, ROW, ROWS_TABLE
from relay.adapters.broker import celery_redis_url
from relay.config import Plan
from relay.events.outbox import Enqueue
from relay.models import TaskRecord, TaskStatus
from relay.runtime import Runtime

TASKS = int(os.environ.get("BENCH_TASKS", "5000"))
LATENCY_TASKS = int(os.environ.get("BENCH_LATENCY_TASKS", "250"))
ENQUEUE_TASKS = int(os.environ.get("BENCH_ENQUEUE_TASKS", "1000"))
BATCH = 100
CONCURRENCY = 2
PLAIN_QUEUE = "plain_bench"


def _start(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _wait(condition: Callable[[], bool], timeout: float = 600, what: str = "benchmark") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not finish in {timeout:.0f} s")
        time.sleep(0.02)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def _alternate(rounds: int, sides: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    """Run each side ``rounds`` times, the order reversed every other round."""
    results: dict[str, list[float]] = {name: [] for name in sides}
    order = list(sides)
    for round_no in range(rounds):
        for name in order if round_no % 2 == 0 else reversed(order):
            results[name].append(sides[name]())
    return results


def run(rounds: int) -> list[Row]:
    with bench_runtime() as (_, runtime):
        return _run(rounds, runtime)


def _run(rounds: int, runtime: Runtime) -> list[Row]:
    url = celery_redis_url(runtime.settings, runtime.redis_url)
    probe = redis.Redis.from_url(runtime.redis_url)
    database_url = runtime.settings.database_url
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text(ROWS_TABLE))
    env = dict(
        os.environ,
        RELAY_REDIS_URL=runtime.redis_url,
        RELAY_VAR_DIR=str(runtime.settings.var_dir),
        RELAY_DATABASE_URL=database_url,
        RELAY_LOG_LEVEL="WARNING",
        BENCH_BROKER=url,
        BENCH_BACKEND=url,
        BENCH_PROBE_REDIS=runtime.redis_url,
        BENCH_DATABASE_URL=database_url,
    )
    from celery import Celery

    plain = Celery("plain-client", broker=url, backend=url)
    plain.conf.update(task_default_queue=PLAIN_QUEUE, task_send_sent_event=True)
    relay_argv = [sys.executable, "-m", "relay", "worker", "-Q", QUEUE,
                  "-c", str(CONCURRENCY), "-I", "bench.relay_tasks"]  # fmt: skip
    plain_argv = [sys.executable, "-m", "celery", "-A", "bench.plain_app", "worker",
                  "-Q", PLAIN_QUEUE, "-c", str(CONCURRENCY), "--without-mingle",
                  "--without-gossip", "-l", "WARNING"]  # fmt: skip
    rows: list[Row] = []
    database = "PostgreSQL" if not runtime.db.is_sqlite else "SQLite"

    def relay_send(name: str, task_id: str, label: str) -> None:
        runtime.celery.send_task(
            name, args=[label], task_id=task_id, queue=QUEUE,
            headers={"idempotency_key": label},
        )  # fmt: skip

    def plain_send(name: str, task_id: str, label: str) -> None:
        plain.send_task(name, args=[label], task_id=task_id, queue=PLAIN_QUEUE)

    fair_tenant = f"bench-fair-{uuid.uuid4().hex[:8]}"

    def fair_send(name: str, task_id: str, label: str) -> None:
        runtime.dispatcher.submit(
            fair_tenant, Plan.TEAM, name, args=[label], queue=QUEUE, task_id=task_id,
            headers={"idempotency_key": label},
        )  # fmt: skip

    # --- enqueue (no worker running) ------------------------------------------------------------
    # Each side writes one row of its own in the transaction that enqueues (the work an app does
    # when it enqueues: Dify commits, then calls ``.delay()``). relay adds its outbox row to that
    # transaction and publishes after the commit; plain Celery commits, then publishes. The bare
    # ``apply_async`` rate (no transaction at all) is reported beside it.
    def enqueue_rate(per_transaction: int, *, relay: bool) -> float:
        tag = uuid.uuid4().hex[:8]
        started = time.perf_counter()
        for b in range(ENQUEUE_TASKS // per_transaction):
            keys = [f"{tag}-{b}-{i}" for i in range(per_transaction)]
            with runtime.db.transaction() as session:
                session.execute(text(INSERT_ROW), {"id": f"{tag}-{b}", "label": "enqueue"})
                if relay and per_transaction == 1:
                    runtime.outbox.enqueue(
                        session, NOOP.name, args=[0], idempotency_key=keys[0], queue=QUEUE
                    )
                elif relay:
                    runtime.outbox.enqueue_many(
                        session,
                        (Enqueue(NOOP.name, args=[i], idempotency_key=k, queue=QUEUE)
                         for i, k in enumerate(keys)),
                    )  # fmt: skip
            if not relay:
                for i in range(per_transaction):
                    plain.send_task("plain.noop", args=[i], queue=PLAIN_QUEUE)
        runtime.outbox.flush()  # the "sent" marks are part of the work
        return ENQUEUE_TASKS / (time.perf_counter() - started)

    def plain_bare() -> float:
        started = time.perf_counter()
        for i in range(ENQUEUE_TASKS):
            plain.send_task("plain.noop", args=[i], queue=PLAIN_QUEUE)
        return ENQUEUE_TASKS / (time.perf_counter() - started)

    enqueue = _alternate(
        rounds,
        {
            "outbox": lambda: enqueue_rate(1, relay=True),
            "plain": lambda: enqueue_rate(1, relay=False),
            "batch": lambda: enqueue_rate(BATCH, relay=True),
            "plain batch": lambda: enqueue_rate(BATCH, relay=False),
            "bare": plain_bare,
        },
    )
    load = load_average()
    med = statistics.median
    rows.append(Row("enqueue, outbox, one task per transaction", med(enqueue["outbox"]),
                    med(enqueue["plain"]), "/s", True,
                    f"crash-safe path ({database}); each transaction also writes one row; "
                    "baseline: the same transaction, committed, then apply_async",
                    load))  # fmt: skip
    rows.append(Row(f"enqueue, outbox, {BATCH} tasks per transaction", med(enqueue["batch"]),
                    med(enqueue["plain batch"]), "/s", True,
                    "enqueue_many: one commit, one Redis pipeline per 100; baseline: the same "
                    f"transaction, committed, then {BATCH} apply_async", load))  # fmt: skip
    rows.append(Row("enqueue, outbox, one task per transaction, vs bare apply_async",
                    med(enqueue["outbox"]), med(enqueue["bare"]), "/s", True,
                    "what a durable enqueue costs: the baseline writes and commits nothing",
                    load))  # fmt: skip
    probe.delete(QUEUE, PLAIN_QUEUE)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM bench_rows"))  # the drain counts its own rows

    # --- drain ----------------------------------------------------------------------------------
    def drain(argv: list[str], send: Callable[[str, str, str], None], task: str) -> float:
        probe.delete("bench:first", "bench:done", "bench:ready")
        tag = uuid.uuid4().hex[:8]
        for i in range(TASKS):
            send(task, str(uuid.uuid4()), f"d{tag}-{i}")
        worker = _start(argv, {**env, "BENCH_PROBE": "count"})
        try:
            _wait(lambda: int(probe.get("bench:done") or 0) >= TASKS, what="drain")
            finished = time.time()
            return TASKS / (finished - float(probe.get("bench:first") or 0))
        finally:
            _stop(worker)

    for kind, relay_task, plain_task, note in (
        ("no-op", NOOP.name, "plain.noop", "relay: records, retry policy, metrics"),
        ("one-row", ROW.name, "plain.row",
         f"relay: row + key exactly once ({database}); plain: at-least-once insert"),
    ):  # fmt: skip
        drained = _alternate(
            rounds,
            {
                "relay": lambda t=relay_task: drain(relay_argv, relay_send, t),  # type: ignore[misc]
                "plain": lambda t=plain_task: drain(plain_argv, plain_send, t),  # type: ignore[misc]
            },
        )
        rows.append(Row(f"drain {TASKS:,} {kind} tasks, {CONCURRENCY} processes",
                        med(drained["relay"]), med(drained["plain"]), "/s", True,
                        note + "; prefork, prefetch 1", load_average()))  # fmt: skip
    with engine.begin() as conn:
        written = conn.execute(text("SELECT count(*) FROM bench_rows")).scalar_one()
        conn.execute(text("DROP TABLE bench_rows"))
    engine.dispose()
    expected = TASKS * rounds * 2
    assert written == expected, f"{written} rows written, {expected} expected"

    # --- latency --------------------------------------------------------------------------------
    def latency(argv: list[str], send: Callable[[str, str, str], None], task: str) -> list[float]:
        probe.delete("bench:starts", "bench:ready")
        worker = _start(argv, {**env, "BENCH_PROBE": "latency"})
        try:
            _wait(lambda: int(probe.get("bench:ready") or 0) >= CONCURRENCY, 120, "worker start")
            for _ in range(CONCURRENCY * 2):  # warm-up: every pool process has run a task
                send(task, str(uuid.uuid4()), f"w{uuid.uuid4().hex[:8]}")
            _wait(lambda: probe.hlen("bench:starts") >= CONCURRENCY * 2, 120, "warm-up")
            probe.delete("bench:starts")
            sent: dict[str, float] = {}
            for i in range(LATENCY_TASKS):
                due = time.perf_counter() + 1 / 50
                task_id = str(uuid.uuid4())
                sent[task_id] = time.time()  # before the publish call
                send(task, task_id, f"l{uuid.uuid4().hex[:8]}-{i}")
                time.sleep(max(0.0, due - time.perf_counter()))
            ids = list(sent)
            _wait(lambda: None not in probe.hmget("bench:starts", ids), 120, "latency")
            starts = [float(v) for v in probe.hmget("bench:starts", ids)]  # type: ignore[arg-type]
            return [(start - sent[t]) * 1000 for t, start in zip(ids, starts, strict=True)]
        finally:
            _stop(worker)

    samples: dict[str, list[float]] = {"relay": [], "fair": [], "plain": []}
    try:
        for round_no in range(rounds):
            sides = [
                ("relay", lambda: latency(relay_argv, relay_send, NOOP.name)),
                ("fair", lambda: latency(relay_argv, fair_send, NOOP.name)),
                ("plain", lambda: latency(plain_argv, plain_send, "plain.noop")),
            ]
            for side, fn in sides if round_no % 2 == 0 else reversed(sides):
                samples[side].extend(fn())
    except TimeoutError as exc:
        print(f"latency not measured: {exc}", file=sys.stderr)
        return rows
    load = load_average()
    with runtime.db.session() as session:
        dead = session.scalar(select(func.count()).where(TaskRecord.status == TaskStatus.DEAD))
    assert not dead, "benchmark tasks failed"
    probe.close()
    count = len(samples["relay"])
    for q in (0.5, 0.99):
        rows.append(Row(f"enqueue→start p{round(q * 100)} at 50/s", percentile(samples["relay"], q),
                        percentile(samples["plain"], q), "ms", False,
                        f"{count} samples per side; clock before publish", load))  # fmt: skip
    for q in (0.5, 0.99):
        rows.append(Row(f"enqueue→start p{round(q * 100)} at 50/s through the fair dispatcher",
                        percentile(samples["fair"], q), percentile(samples["plain"], q), "ms",
                        False, f"{count} samples per side, same run; relay raw send: "
                        f"{percentile(samples['relay'], q):.1f} ms; one tenant (team plan)",
                        load))  # fmt: skip
    return rows
