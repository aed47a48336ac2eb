"""Fair scheduling against raw Celery FIFO, same run, same prefork workers, same queue.

(a) Noisy neighbour: tenant A enqueues 5,000 tasks of ~2 ms, then tenant B submits 100, one
    every 20 ms (both on the team plan), the same backlog on both sides; each tenant's wait
    from enqueue to start (B: p50 and p99 of its 100 waits, nearest rank; A: p99 of its own).
(c) The drain rate of that run (throughput cost), and of 300 tasks of 20 ms.
(b) Ten tenants with weights 1/1/1/4/4/8/8/16/16/16 submit concurrently and saturate the workers:
    achieved share of work against the weight share (max relative error). Ten equal-weight
    tenants arriving one burst after another: Jain's fairness index.
Shares are measured over a window of completions that starts after the last submission, while
every tenant still has work waiting. Writes ``bench/fairness/results.md`` and ``fairness.png``.

Run alone with ``python -m bench.bench_fairness``; sizes from ``BENCH_FAIR_TASKS`` (A's backlog,
5000), ``BENCH_FAIR_MEASURE`` (completions in the weighted share window, 5000; a fifth of it for
the equal-weight window) and ``BENCH_FAIR_WINDOW`` (released tasks in flight, 4). Needs
matplotlib for the chart.
"""

from __future__ import annotations

import json
import math
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import Celery

from bench.common import Row, bench_runtime
from bench.fairness.worker_app import QUEUE
from relay.adapters.broker import celery_redis_url
from relay.config import Plan, TenancySettings
from relay.scheduling.dispatcher import FairDispatcher
from relay.scheduling.fairshare import jain_index
from relay.scheduling.settings import SchedulingSettings
from relay.scheduling.tenant_queue import RedisTenantQueue

TASKS_A = int(os.environ.get("BENCH_FAIR_TASKS", "5000"))
MEASURE = int(os.environ.get("BENCH_FAIR_MEASURE", "5000"))
PRE_WINDOW = 1500  # completions while ten producers submit, at most (2 cores)
TASKS_B = int(os.environ.get("BENCH_FAIR_B", "100"))  # at least 100: B's p99 is a real p99
B_GAP = float(os.environ.get("BENCH_FAIR_B_GAP", "0.02"))  # seconds between B's submissions
LONG_TASKS, LONG_MS = 300, 20.0  # throughput at a more realistic task length
SLEEP_MS = 2.0
CONCURRENCY = 2
WINDOW = int(os.environ.get("BENCH_FAIR_WINDOW", str(2 * CONCURRENCY)))  # 2 per worker slot
OUT = Path(__file__).parent / "fairness"
WEIGHTED_PLANS = (
    [Plan.SANDBOX] * 3 + [Plan.PROFESSIONAL] * 2 + [Plan.TEAM] * 2 + [Plan.ENTERPRISE] * 3
)
EQUAL_TENANTS = 10
EQUAL_MEASURE = MEASURE // 5


@dataclass(frozen=True)
class Record:
    tenant: str
    submitted: float
    start: float
    run: float

    @property
    def wait(self) -> float:
        return self.start - self.submitted


class Bench:
    """The driver: submits through the dispatcher or straight to Celery, reads the run log."""

    def __init__(self, runtime: Any, settings: SchedulingSettings, broker: str) -> None:
        self.redis = runtime.redis
        self.celery = Celery("fair-bench-driver", broker=broker)
        self.celery.conf.update(task_ignore_result=True)
        self.tenancy = TenancySettings()
        self.dispatcher = FairDispatcher(
            RedisTenantQueue(runtime.redis, settings), self.celery, settings, self.tenancy
        )

    def submitter(
        self, fair: bool, log: str, sleep_ms: float = SLEEP_MS
    ) -> Callable[[str, Plan], None]:
        def submit(tenant: str, plan: Plan) -> None:
            args = [log, tenant, time.time(), sleep_ms]
            if fair:
                self.dispatcher.submit(tenant, plan, "bench.fair_work", args, queue=QUEUE)
            else:
                self.celery.send_task("bench.fair_work", args=args, queue=QUEUE)

        return submit

    def wait(self, log: str, expected: int, timeout: float = 600) -> list[Record]:
        deadline = time.monotonic() + timeout
        last_tick = time.monotonic()
        while self.redis.llen(log) < expected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {self.redis.llen(log)} of {expected} tasks ran")
            if time.monotonic() - last_tick > 1.0:
                self.dispatcher.tick()  # what beat does
                last_tick = time.monotonic()
            time.sleep(0.05)
        raw = self.redis.lrange(log, 0, -1)
        self.redis.delete(log)
        return [
            Record(r["t"], r["sub"], r["start"], r["run"]) for r in (json.loads(x) for x in raw)
        ]

    # --- scenarios -------------------------------------------------------------------------

    def noisy_neighbour(self, fair: bool) -> tuple[list[float], float, list[float]]:
        """B's waits (s), the drain rate (tasks/s) of A's backlog plus B's tasks, A's waits."""
        log = f"bench:fair:log:{uuid.uuid4().hex}"
        submit = self.submitter(fair, log)
        started = time.time()
        for _ in range(TASKS_A):
            submit("tenant-a", Plan.TEAM)
        for _ in range(TASKS_B):
            # Spaced, well below B's share: each wait is what the neighbour's backlog costs B,
            # not B's own tasks queued behind each other.
            submit("tenant-b", Plan.TEAM)
            time.sleep(B_GAP)
        records = self.wait(log, TASKS_A + TASKS_B)
        finished = max(r.start + r.run for r in records)
        waits = sorted(r.wait for r in records if r.tenant == "tenant-b")
        a_waits = sorted(r.wait for r in records if r.tenant == "tenant-a")
        return waits, len(records) / (finished - started), a_waits

    def drain(self, fair: bool, count: int, sleep_ms: float) -> float:
        """Tasks per second for ``count`` tasks of ``sleep_ms`` from one tenant."""
        log = f"bench:fair:log:{uuid.uuid4().hex}"
        submit = self.submitter(fair, log, sleep_ms)
        started = time.time()
        for _ in range(count):
            submit("tenant-a", Plan.TEAM)
        records = self.wait(log, count)
        return count / (max(r.start + r.run for r in records) - started)

    def weighted(self, fair: bool) -> dict[str, float]:
        """Share of work per tenant while all ten saturate the workers (concurrent producers)."""
        tenants = [f"w{i}-{plan}" for i, plan in enumerate(WEIGHTED_PLANS)]
        total = sum(self.tenancy.weights[p] for p in WEIGHTED_PLANS)
        # Enough backlog that every tenant still waits when the window closes: its share of the
        # window plus of what runs while the producers are still submitting, with a margin.
        backlog = [
            math.ceil(1.2 * (MEASURE + PRE_WINDOW) * self.tenancy.weights[p] / total) + 10
            for p in WEIGHTED_PLANS
        ]
        log = f"bench:fair:log:{uuid.uuid4().hex}"
        submit = self.submitter(fair, log)

        def produce(tenant: str, plan: Plan, count: int) -> None:
            for _ in range(count):
                submit(tenant, plan)

        threads = [
            threading.Thread(target=produce, args=args)
            for args in zip(tenants, WEIGHTED_PLANS, backlog, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        all_in = time.time()
        return _window_shares(self.wait(log, sum(backlog)), all_in, tenants, MEASURE)

    def equal_bursts(self, fair: bool) -> dict[str, float]:
        """Share of work per equal-weight tenant, each arriving with a burst after the other."""
        tenants = [f"e{i}" for i in range(EQUAL_TENANTS)]
        # The first tenants run alone while the later ones submit: they need the larger margin.
        per_tenant = EQUAL_MEASURE // EQUAL_TENANTS * 4
        log = f"bench:fair:log:{uuid.uuid4().hex}"
        submit = self.submitter(fair, log)
        for tenant in tenants:
            for _ in range(per_tenant):
                submit(tenant, Plan.PROFESSIONAL)
        all_in = time.time()
        records = self.wait(log, per_tenant * len(tenants))
        return _window_shares(records, all_in, tenants, EQUAL_MEASURE)


def _window_shares(
    records: list[Record], after: float, tenants: list[str], measure: int
) -> dict[str, float]:
    window = sorted((r for r in records if r.start >= after), key=lambda r: r.start)[:measure]
    end = window[-1].start
    starving = [t for t in tenants if not any(r.tenant == t and r.start > end for r in records)]
    work = {t: sum(r.run for r in window if r.tenant == t) for t in tenants}
    total = sum(work.values())
    shares = {t: w / total for t, w in work.items()}
    shares["_backlogged"] = float(not starving)  # every tenant still had work after the window
    return shares


def _start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable, "-m", "celery", "-A", "bench.fairness.worker_app", "worker",
        "-P", "prefork", "-c", str(CONCURRENCY), "-Q", QUEUE, "-l", "WARNING",
        "--without-mingle", "--without-gossip",
    ]  # fmt: skip
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


def _share_error(shares: dict[str, float], weights: dict[str, int]) -> float:
    total = sum(weights.values())
    return max(abs(shares[t] / (w / total) - 1) for t, w in weights.items())


def run(rounds: int) -> list[Row]:
    prefix = f"bench:fair:{uuid.uuid4().hex[:8]}"
    settings = SchedulingSettings(key_prefix=prefix, window=WINDOW)
    with bench_runtime() as (_, runtime):
        broker = celery_redis_url(runtime.settings, runtime.redis_url)
        env = dict(
            os.environ,
            BENCH_BROKER=broker,
            BENCH_REDIS=runtime.redis_url,
            BENCH_FAIR_PREFIX=prefix,
            BENCH_FAIR_WINDOW=str(WINDOW),
        )
        bench = Bench(runtime, settings, broker)
        worker = _start_worker(env)
        try:
            bench.wait(_warm_up(bench), 1, timeout=60)
            noisy = {fair: [bench.noisy_neighbour(fair) for _ in range(rounds)] for fair in (1, 0)}
            slow = {
                fair: [bench.drain(fair, LONG_TASKS, LONG_MS) for _ in range(rounds)]
                for fair in (1, 0)
            }
            weighted = {fair: [bench.weighted(fair) for _ in range(rounds)] for fair in (1, 0)}
            equal = {fair: [bench.equal_bursts(fair) for _ in range(rounds)] for fair in (1, 0)}
        finally:
            _stop(worker)
            bench.dispatcher.close()

    weights = {
        f"w{i}-{plan}": TenancySettings().weights[plan] for i, plan in enumerate(WEIGHTED_PLANS)
    }
    med = statistics.median
    b_p50 = {f: med(_quantile(w, 0.5) for w, _, _ in noisy[f]) * 1000 for f in (1, 0)}
    b_p99 = {f: med(_quantile(w, 0.99) for w, _, _ in noisy[f]) * 1000 for f in (1, 0)}
    a_p99 = {f: med(_quantile(a, 0.99) for _, _, a in noisy[f]) * 1000 for f in (1, 0)}
    rate = {f: med(r for _, r, _ in noisy[f]) for f in (1, 0)}
    slow_rate = {f: med(slow[f]) for f in (1, 0)}
    error = {f: med(_share_error(s, weights) for s in weighted[f]) * 100 for f in (1, 0)}
    jain = {f: med(jain_index(_plain(s).values()) for s in equal[f]) for f in (1, 0)}
    backlogged = all(s["_backlogged"] for s in weighted[1] + equal[1])
    rows = [
        Row(f"(a) noisy neighbour: B's wait p50, A has {TASKS_A} queued (ms)", b_p50[1], b_p50[0],
            "ms", higher_is_better=False, note="baseline: raw Celery FIFO on one queue"),
        Row(f"(a) noisy neighbour: B's wait p99 of {TASKS_B} (ms)", b_p99[1], b_p99[0], "ms",
            higher_is_better=False,
            note=f"same backlog both sides ({TASKS_A} of A, then B's); goal: relay <= 50 ms"),
        Row(f"(a) noisy neighbour: A's wait p99 of {TASKS_A} (ms)", a_p99[1], a_p99[0], "ms",
            higher_is_better=False, note="what fairness costs the tenant with the backlog"),
        Row("(b) weights 1/1/1/4/4/8/8/16/16/16: max share error vs weight (%)", error[1],
            error[0], "%", higher_is_better=False,
            note=f"over {MEASURE} completions; goal <= 5%" + ("" if backlogged else "; UNDERFED")),
        Row("(b) 10 equal tenants, bursts one after another: Jain's index x100", jain[1] * 100,
            jain[0] * 100, "", higher_is_better=True, note="goal >= 98"),
        Row(f"(c) throughput, {TASKS_A + TASKS_B} tasks of {SLEEP_MS:g} ms (tasks/s)", rate[1],
            rate[0], "/s", higher_is_better=True,
            note=f"{CONCURRENCY} prefork processes, window {settings.window}"),
        Row(f"(c) throughput, {LONG_TASKS} tasks of {LONG_MS:g} ms (tasks/s)", slow_rate[1],
            slow_rate[0], "/s", higher_is_better=True, note="same workers, one tenant"),
    ]  # fmt: skip
    _write(rows, noisy, weighted, equal, weights, rounds)
    return rows


def _quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` by nearest rank (no interpolation)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _warm_up(bench: Bench) -> str:
    log = f"bench:fair:log:{uuid.uuid4().hex}"
    bench.submitter(False, log)("warm-up", Plan.TEAM)
    return log


_HOW = """\
How it is measured: one prefork worker (2 processes) consumes one queue; the relay rows submit
through `FairDispatcher` (window of 2 released tasks per worker process, settings defaults
otherwise), the baseline rows `send_task` the same task to the same queue. A wait is the time
from the submit call to the start of the task body. Shares are shares of measured run time in a
window of completions that opens after the last submission, while every tenant still waits.
The throughput cost is the scheduler's three Redis round trips per task (release, start gate,
finish) plus the worker-side publish of the next release; it is a fixed cost per task, so it
shrinks as tasks get longer (second throughput row).
"""


def _plain(shares: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in shares.items() if not k.startswith("_")}


def _write(
    rows: list[Row],
    noisy: dict[int, list[tuple[list[float], float, list[float]]]],
    weighted: dict[int, list[dict[str, float]]],
    equal: dict[int, list[dict[str, float]]],
    weights: dict[str, int],
    rounds: int,
) -> None:
    from bench.__main__ import _table

    OUT.mkdir(exist_ok=True)
    total = sum(weights.values())
    lines = [
        "| tenant | weight | target share | relay share | raw Celery share |",
        "|---|---|---|---|---|",
    ]
    for tenant, weight in weights.items():
        lines.append(
            f"| {tenant} | {weight} | {weight / total:.2%} | {weighted[1][0][tenant]:.2%} "
            f"| {weighted[0][0][tenant]:.2%} |"
        )
    waits = {f: [round(w * 1000, 1) for w in noisy[f][0][0]] for f in (1, 0)}
    jain = {f: [round(jain_index(_plain(s).values()), 4) for s in equal[f]] for f in (1, 0)}
    text = (
        f"# Fair scheduling benchmark\n\n{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, "
        f"{os.cpu_count()} cores, rounds={rounds} (medians), "
        f"redis={'external' if os.environ.get('RELAY_REDIS_URL') else 'embedded'}, "
        f"load average at the end {os.getloadavg()[0]:.1f} (a shared machine: ratios, not "
        f"absolute numbers, are what carries over). "
        f"Produced by `python -m bench.bench_fairness` (or `make bench`).\n\n"
        f"{_table(rows)}\n\n![B's wait and weighted shares](fairness.png)\n\n"
        f"{_HOW}\n"
        f"## B's {TASKS_B} waits, first round (ms)\n\n"
        f"- relay: {waits[1]}\n- raw Celery: {waits[0]}\n\n"
        f"## Weighted shares, first round\n\n" + "\n".join(lines) + "\n\n"
        f"## Jain's index, equal weights, each round\n\n- relay: {jain[1]}\n"
        f"- raw Celery: {jain[0]}\n"
    )
    (OUT / "results.md").write_text(text)
    _chart(noisy, weighted, weights)


def _chart(
    noisy: dict[int, list[tuple[list[float], float, list[float]]]],
    weighted: dict[int, list[dict[str, float]]],
    weights: dict[str, int],
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for fair, label, color in ((1, "relay", "tab:green"), (0, "raw Celery", "tab:red")):
        waits = [w * 1000 for w in noisy[fair][0][0]]
        left.plot(range(1, len(waits) + 1), waits, "o-", label=label, color=color)
    left.set_yscale("log")
    left.set_xlabel("B's task (in order of start)")
    left.set_ylabel("wait from enqueue to start (ms, log)")
    left.set_title(f"(a) B's {TASKS_B} tasks behind A's {TASKS_A}")
    left.axhline(50, color="grey", linestyle="--", linewidth=1, label="50 ms goal")
    left.legend()
    total = sum(weights.values())
    names = list(weights)
    xs = range(len(names))
    right.bar([x - 0.27 for x in xs], [weights[n] / total for n in names], 0.27, label="weight")
    right.bar(xs, [weighted[1][0][n] for n in names], 0.27, label="relay", color="tab:green")
    right.bar([x + 0.27 for x in xs], [weighted[0][0][n] for n in names], 0.27,
              label="raw Celery", color="tab:red")  # fmt: skip
    labels = [f"{n.split('-')[1][:4]} {n[1]}\nw={weights[n]}" for n in names]
    right.set_xticks(list(xs), labels, fontsize=8)
    right.set_ylabel("share of work")
    right.set_title("(b) achieved share vs weight")
    right.legend()
    fig.tight_layout()
    fig.savefig(OUT / "fairness.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    from bench.__main__ import _table

    print(_table(run(int(os.environ.get("BENCH_ROUNDS", "1")))))
