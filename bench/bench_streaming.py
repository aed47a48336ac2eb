"""Run events to clients: publish→client latency through SSE, many clients, stream vs pub/sub.

A real API process (``relay api``: gunicorn + gevent) serves ``/v1/workflows/runs/<id>/events``;
this process publishes through ``AppQueueManager`` (what the run task does) at a fixed rate and
reads with httpx. Rows:

* publish→client latency p50/p99 at 200 events/s, one SSE client; baseline: the same events read
  straight from the Redis Stream in this process (the cost of HTTP, SSE and the API's listener).
* N SSE clients on the one API process (5 per run, 200 events/s in all): delivery latency p99
  and the API process's CPU; baseline: the one-client run.
* the channel itself, Redis Stream (XADD→XREAD) against Redis pub/sub: latency p99, and events
  delivered to a client that drops its connection 5 times for 100 ms while 1,000 events are
  published (stream: reconnect with ``Last-Event-ID`` through the API; pub/sub: resubscribe).

``python -m bench.bench_streaming`` writes ``bench/streaming/results.md``.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from bench.common import Row, bench_runtime
from bench.streaming.channels import (
    GAP_SECONDS,
    GAPS,
    RATE,
    gaps,
    ms,
    paced,
    pubsub_delivered_with_reconnects,
    pubsub_latencies,
    stamp,
    stream_latencies,
)
from relay.models import CreatorRole, WorkflowRun, new_id
from relay.runtime import Runtime
from relay.services.auth_service import AuthService
from relay.services.run_streams import end_user_id
from relay.services.tenant_service import TenantService
from relay.streaming import AppQueueManager, InvokeFrom
from relay.streaming.queue_events import TextChunkEvent, WorkflowSucceededEvent
from relay.streaming.sse import SSEParser

EVENTS = int(os.environ.get("BENCH_STREAM_EVENTS", "600"))
CLIENTS = int(os.environ.get("BENCH_SSE_CLIENTS", "500"))
CLIENTS_PER_RUN = 5
RECONNECT_EVENTS = 1_000
USER = "bench-user"
OUT = Path(__file__).parent / "streaming"


@dataclass
class Ctx:
    runtime: Runtime
    tenant_id: str
    key: str
    base_url: str
    api_pid: int

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def new_run(self) -> AppQueueManager:
        """A run record owned by USER and its (publishing) queue manager."""
        run_id, owner = new_id(), end_user_id(self.tenant_id, USER)
        with self.runtime.db.transaction() as session:
            session.add(
                WorkflowRun(
                    id=run_id, tenant_id=self.tenant_id, app_id=new_id(),
                    triggered_from="app-run", version="bench", graph={}, inputs={},
                    status="running", created_by_role=CreatorRole.END_USER, created_by=owner,
                )
            )  # fmt: skip
        return self.runtime.streams.manager(run_id, owner, InvokeFrom.SERVICE_API)

    def events_url(self, run_id: str) -> str:
        return f"{self.base_url}/v1/workflows/runs/{run_id}/events?user={USER}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _api_process(runtime: Runtime) -> Iterator[tuple[str, int]]:
    port = _free_port()
    env = dict(
        os.environ,
        RELAY_API_PORT=str(port),
        RELAY_DATABASE_URL=runtime.settings.database_url,
        RELAY_REDIS_URL=runtime.redis_url,
        RELAY_VAR_DIR=str(runtime.settings.var_dir),
        RELAY_LOG_LEVEL="WARNING",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "relay", "api"], env=env, stdout=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url + "/openapi.json", timeout=2)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("relay api did not come up") from None
                time.sleep(0.1)
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _cpu_seconds(pid: int) -> float:
    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        times = proc.cpu_times()
        total += times.user + times.system
    return total


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- one SSE client, and the raw channel under it ---------------------------------------------


def sse_latencies(ctx: Ctx, count: int) -> tuple[list[float], float]:
    """Latencies (ms) of ``count`` events through one SSE client; API CPU (% of one core)."""
    manager = ctx.new_run()
    connected, latencies = threading.Event(), []

    def client() -> None:
        parser = SSEParser()
        with httpx.stream(
            "GET", ctx.events_url(manager.task_id), headers=ctx.headers, timeout=60
        ) as r:
            for text in r.iter_text():
                connected.set()
                for message in parser.feed(text):
                    if message.event == "text_chunk":
                        latencies.append(ms(json.loads(message.data)["text"]))

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    connected.wait(30)
    cpu, wall = _cpu_seconds(ctx.api_pid), time.perf_counter()
    paced(count, RATE, lambda _: manager.publish(stamp()))
    cpu, wall = _cpu_seconds(ctx.api_pid) - cpu, time.perf_counter() - wall
    manager.publish(WorkflowSucceededEvent(), final=True)
    thread.join(30)
    return latencies, 100 * cpu / wall


# --- delivered under reconnect --------------------------------------------------------------------


def sse_delivered_with_reconnects(ctx: Ctx, count: int) -> int:
    """Events one SSE client gets when it drops the connection GAPS times (Last-Event-ID)."""
    manager = ctx.new_run()
    publisher = threading.Thread(
        target=lambda: (
            paced(count, RATE, lambda i: manager.publish(TextChunkEvent(text=str(i)))),
            manager.publish(WorkflowSucceededEvent(), final=True),
        ),
        daemon=True,
    )
    seen: list[str] = []
    last: str | None = None
    pending, finished = gaps(count), False
    publisher.start()
    while not finished:
        headers = {**ctx.headers, **({"Last-Event-ID": last} if last else {})}
        with httpx.stream("GET", ctx.events_url(manager.task_id), headers=headers, timeout=60) as r:
            parser, dropped = SSEParser(), False
            for text in r.iter_text():
                for message in parser.feed(text):
                    if message.event == "workflow_succeeded":
                        finished = True
                    elif message.event == "text_chunk":
                        seen.append(message.json()["text"])
                        last = message.id
                        if len(seen) in pending:
                            pending.discard(len(seen))
                            dropped = True
                            break
                if dropped:
                    break
        if dropped:
            time.sleep(GAP_SECONDS)
    publisher.join(30)
    assert len(seen) == len(set(seen)), "an event arrived twice"
    return len(seen)


# --- many clients ---------------------------------------------------------------------------------


def many_clients(ctx: Ctx, clients: int, seconds: float) -> tuple[list[float], float, int]:
    """``clients`` SSE clients, 5 per run, 200 events/s in all: latencies, API CPU, errors."""
    runs = [ctx.new_run() for _ in range(max(1, clients // CLIENTS_PER_RUN))]
    latencies: list[float] = []
    errors = 0
    ready = threading.Semaphore(0)

    async def one(client: httpx.AsyncClient, run_id: str) -> None:
        nonlocal errors
        parser = SSEParser()
        try:
            async with client.stream("GET", ctx.events_url(run_id), headers=ctx.headers) as r:
                if r.status_code != 200:
                    raise httpx.HTTPStatusError("refused", request=r.request, response=r)
                first = True
                async for text in r.aiter_text():
                    if first:
                        ready.release()
                        first = False
                    for message in parser.feed(text):
                        if message.event == "text_chunk":
                            latencies.append(ms(json.loads(message.data)["text"]))
        except httpx.HTTPError:
            errors += 1
            ready.release()

    async def main() -> None:
        limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=0)
        async with httpx.AsyncClient(limits=limits, timeout=120) as client:
            tasks = [
                asyncio.create_task(one(client, runs[i % len(runs)].task_id))
                for i in range(clients)
            ]
            await asyncio.gather(*tasks)

    loop_thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    loop_thread.start()
    for _ in range(clients):
        ready.acquire(timeout=60)
    cpu, wall = _cpu_seconds(ctx.api_pid), time.perf_counter()
    count = int(seconds * RATE)
    paced(count, RATE, lambda i: runs[i % len(runs)].publish(stamp()))
    cpu, wall = _cpu_seconds(ctx.api_pid) - cpu, time.perf_counter() - wall
    for manager in runs:
        manager.publish(WorkflowSucceededEvent(), final=True)
    loop_thread.join(120)
    return latencies, 100 * cpu / wall, errors


# --- the table -----------------------------------------------------------------------------------


def run(rounds: int) -> list[Row]:
    """The streaming rows (medians over ``rounds``)."""
    with bench_runtime() as (_, runtime):
        tenant = TenantService(runtime).create("bench-streaming", "professional")
        key = AuthService(runtime).issue_key(tenant.id, "bench").key
        with _api_process(runtime) as (url, pid):
            ctx = Ctx(runtime, tenant.id, key, url, pid)
            sse_latencies(ctx, 50)  # warm up the API process
            one = [sse_latencies(ctx, EVENTS) for _ in range(rounds)]
            raw = [stream_latencies(runtime, EVENTS) for _ in range(rounds)]
            pub = [pubsub_latencies(runtime, EVENTS) for _ in range(rounds)]
            many = [many_clients(ctx, CLIENTS, EVENTS / RATE) for _ in range(rounds)]
            sse_got = [sse_delivered_with_reconnects(ctx, RECONNECT_EVENTS) for _ in range(rounds)]
            pub_got = [
                pubsub_delivered_with_reconnects(runtime, RECONNECT_EVENTS) for _ in range(rounds)
            ]

    def med(samples: list[list[float]], q: float) -> float:
        return statistics.median(_percentile(s, q) for s in samples)

    one_lat = [s for s, _ in one]
    many_lat = [s for s, _, _ in many]
    errors = sum(e for _, _, e in many)
    delivered = min(len(s) for s in many_lat)
    expected = EVENTS * CLIENTS_PER_RUN
    note_many = (
        f"{CLIENTS // CLIENTS_PER_RUN} runs x {CLIENTS_PER_RUN} clients; delivered "
        f"{delivered}/{expected} (worst round); {errors} client errors"
    )
    cpu_many = statistics.median(c for _, c, _ in many)
    cpu_one = statistics.median(c for _, c in one)
    gap_note = f"{GAP_SECONDS * 1000:.0f} ms gaps"
    return [
        Row(
            "SSE publish→client p50, 200 ev/s (ms)", med(one_lat, 0.5), med(raw, 0.5), "ms",
            False, "gunicorn+gevent API process; baseline: XREAD in-process, no HTTP",
        ),
        Row(
            "SSE publish→client p99, 200 ev/s (ms)", med(one_lat, 0.99), med(raw, 0.99), "ms",
            False, "goal p99 <= 5 ms on loopback",
        ),
        Row(
            f"{CLIENTS} SSE clients: publish→client p99 (ms)", med(many_lat, 0.99),
            med(one_lat, 0.99), "ms", False, note_many + "; baseline: one client",
        ),
        Row(
            f"{CLIENTS} SSE clients: API process CPU (% of a core)", cpu_many, cpu_one, "%",
            False, f"{int(RATE) * CLIENTS_PER_RUN} deliveries/s; baseline: one client, 200/s",
        ),
        Row(
            "channel p99: Redis Stream vs pub/sub (ms)", med(raw, 0.99), med(pub, 0.99), "ms",
            False, "XADD→XREAD vs PUBLISH→subscriber, in-process",
        ),
        Row(
            f"delivered of {RECONNECT_EVENTS} with {GAPS} reconnects",
            statistics.median(sse_got), statistics.median(pub_got), "events", True,
            f"stream via SSE + Last-Event-ID vs pub/sub resubscribe, {gap_note}",
        ),
    ]  # fmt: skip


def main() -> None:
    from bench.__main__ import _table

    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    rows = run(rounds)
    text = (
        f"# Streaming benchmark\n\n{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, "
        f"{os.cpu_count()} cores, rounds={rounds} (medians), "
        f"redis={'external' if os.environ.get('RELAY_REDIS_URL') else 'embedded'}, "
        f"database={'external' if os.environ.get('RELAY_DATABASE_URL') else 'sqlite'}. "
        "Produced by `python -m bench.bench_streaming`.\n\n"
        + _table(rows)
        + "\n\n"
        + (__doc__ or "").split("\n\n", 1)[1]
    )
    OUT.mkdir(exist_ok=True)
    (OUT / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
