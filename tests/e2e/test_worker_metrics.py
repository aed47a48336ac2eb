"""A prefork worker's ``/metrics`` (``RELAY_MONITORING_WORKER_METRICS_PORT``) sums what every pool
child counted: a counter incremented by tasks in two children is their total in every scrape."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from relay.config import Settings
from relay.runtime import Runtime
from tests.e2e.api_server import free_port
from tests.waiting import wait_until

RUNS = 24


def _probe_runs(url: str) -> float | None:
    try:
        text = httpx.get(url, timeout=5).text
    except httpx.HTTPError:
        return None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "probe_runs_total":
                return float(sample.value)
    return 0.0


def test_pool_children_metrics_add_up(runtime: Runtime, settings: Settings) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env.update(
        RELAY_DATABASE_URL=settings.database_url,
        RELAY_REDIS_URL=str(settings.redis.url),
        RELAY_VAR_DIR=str(settings.var_dir),
        RELAY_MONITORING_WORKER_METRICS_PORT=str(port),
        RELAY_LOG_LEVEL="WARNING",
        PYTHONPATH=str(Path(__file__).resolve().parents[2]),
    )
    argv = [sys.executable, "-m", "relay", "worker", "-Q", "monitor", "-c", "2", "--quiet"]
    argv += ["--include", "tests.e2e.worker_probe", "-n", f"metrics-{port}@test"]
    log = settings.var_dir.parent / "worker.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        worker = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_until(lambda: _probe_runs(url) is not None, 60, "the worker's /metrics")
        results = [
            runtime.celery.send_task("tests.probe_count", queue="monitor") for _ in range(RUNS)
        ]
        pids = {result.get(timeout=60) for result in results}
        scrapes = [wait_until(lambda: _probe_runs(url) == RUNS, 10, "all runs") for _ in range(3)]
        directories = [p.name for p in (settings.var_dir / "metrics").iterdir()]
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)
    assert len(pids) == 2, (pids, log.read_text())  # both pool children ran probes
    assert worker.pid not in pids
    assert scrapes == [True, True, True]
    assert directories == [f"worker-{worker.pid}"]
