"""First-event latency of a streamed workflow run: relay's own ``/v1`` against ``/dify/v1``.

One relay app is served on loopback (werkzeug, threaded) with a real Celery worker (threads)
on the workflow queues, on embedded defaults (or the ``RELAY_*`` environment). The same
published app (start -> llm -> end, offline model without token delay) runs
``BENCH_DIFY_RUNS`` times through each API, alternating; each sample is the time from sending
the request to the first event of the run (``workflow_started``) parsed by the client:
``event:`` + ``data:`` on ``/v1``, one ``data:`` line of JSON on ``/dify/v1``.

``python -m bench.bench_dify_api`` prints p50/p95 per API; ``make bench`` includes it.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from collections.abc import Callable

import httpx
from celery.contrib.testing.worker import start_worker
from werkzeug.serving import make_server

from bench.common import Row, bench_runtime
from relay import catalog
from relay.services.app_keys import AppKeyService
from relay.services.app_service import AppService
from relay.services.auth_service import AuthService
from relay.services.tenant_service import TenantService
from relay.worker.hooks import install_worker_hooks

RUNS = int(os.environ.get("BENCH_DIFY_RUNS", "30"))
WORKFLOW_QUEUES = [q for q in catalog.queue_names() if q.startswith("workflow")]
GRAPH = {
    "nodes": [
        {"id": "start", "data": {"type": "start", "title": "Start", "variables": [
            {"variable": "topic", "type": "text-input"}]}},
        {"id": "llm", "data": {"type": "llm", "title": "LLM", "model": {
            "provider": "openai", "name": "gpt-4o", "mode": "chat", "completion_params": {}},
            "prompt_template": [{"role": "user", "text": "About {{#start.topic#}}"}]}},
        {"id": "end", "data": {"type": "end", "title": "End", "outputs": [
            {"variable": "text", "value_selector": ["llm", "text"]}]}},
    ],
    "edges": [
        {"id": "a", "source": "start", "target": "llm", "sourceHandle": "source"},
        {"id": "b", "source": "llm", "target": "end", "sourceHandle": "source"},
    ],
}  # fmt: skip


def _first_event(client: httpx.Client, path: str, body: dict[str, object], key: str) -> float:
    """Seconds from sending the request to the first run event; the stream is read to its end."""
    headers = {"Authorization": f"Bearer {key}"}
    started = time.perf_counter()
    first: float | None = None
    with client.stream("POST", path, json=body, headers=headers) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if first is None and line.startswith("data:"):
                first = time.perf_counter() - started
                json.loads(line[5:])
    assert first is not None, f"{path}: no event"
    return first


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure() -> tuple[list[float], list[float]]:
    """First-event latencies (seconds): relay's ``/v1`` and ``/dify/v1``."""
    with bench_runtime(workflow={"llm_token_delay": 0.0}) as (app, runtime):
        tenant = TenantService(runtime).create("bench", "team").id
        relay_key = AuthService(runtime).issue_key(tenant, "bench").key
        apps = AppService(runtime)
        app_id = apps.create(tenant, name="bench", mode="workflow").id
        apps.sync_draft_workflow(tenant, app_id, GRAPH)
        apps.publish_workflow(tenant, app_id)
        app_key = AppKeyService(runtime).issue(tenant, app_id).key
        server = make_server("127.0.0.1", 0, app, threaded=True)  # type: ignore[arg-type]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        install_worker_hooks(runtime.celery, runtime.db, runtime.lifecycle)
        worker = start_worker(
            runtime.celery, pool="threads", concurrency=2, perform_ping_check=False,
            queues=WORKFLOW_QUEUES, loglevel="WARNING",
        )  # fmt: skip
        relay_times: list[float] = []
        dify_times: list[float] = []
        try:
            with (
                worker,
                httpx.Client(
                    base_url=f"http://127.0.0.1:{server.server_port}", timeout=30
                ) as client,
            ):
                inputs = {"topic": "owls"}
                runs: list[tuple[list[float], Callable[[], float]]] = [
                    (relay_times, lambda: _first_event(
                        client, "/v1/workflows/run",
                        {"app_id": app_id, "inputs": inputs, "user": "u"}, relay_key)),
                    (dify_times, lambda: _first_event(
                        client, "/dify/v1/workflows/run",
                        {"inputs": inputs, "user": "u", "response_mode": "streaming"}, app_key)),
                ]  # fmt: skip
                for _, run in runs:  # warm-up: imports, connection pools, first task
                    run()
                for _ in range(RUNS):
                    for into, run in runs:
                        into.append(run())
        finally:
            server.shutdown()
    return relay_times, dify_times


def run(rounds: int) -> list[Row]:
    """``make bench`` rows: first-event p50 through ``/dify/v1``, baseline relay's ``/v1``."""
    relay_times, dify_times = measure()
    relay_p50 = statistics.median(relay_times) * 1000
    dify_p50 = statistics.median(dify_times) * 1000
    note = (
        f"p95 {_percentile(dify_times, 0.95) * 1000:.1f} ms vs "
        f"{_percentile(relay_times, 0.95) * 1000:.1f} ms; {RUNS} runs each"
    )
    return [
        Row("first event of a streamed run, /dify/v1 (baseline /v1)", dify_p50, relay_p50, "ms",
            note=note, higher_is_better=False)
    ]  # fmt: skip


if __name__ == "__main__":
    relay_times, dify_times = measure()
    for name, values in (("/v1", relay_times), ("/dify/v1", dify_times)):
        print(
            f"{name:10} first event p50 {statistics.median(values) * 1000:6.1f} ms  "
            f"p95 {_percentile(values, 0.95) * 1000:6.1f} ms  (n={len(values)})"
        )
