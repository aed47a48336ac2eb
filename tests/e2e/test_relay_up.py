"""``relay up`` on embedded defaults: healthy, serves a task, stops in order within its bounded
time, and leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Start-up and the ordered stop each take tens of seconds on a loaded machine.
@pytest.mark.timeout(240)
def test_relay_up_runs_the_stack_and_stops_cleanly(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env.update(RELAY_API_PORT=str(port), RELAY_LOG_LEVEL="INFO")
    proc = subprocess.Popen(
        [sys.executable, "-m", "relay", "up"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    output: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            output.append(line)
            if line.startswith("relay is up"):
                break
        assert any(line.startswith("relay is up") for line in output), "".join(output)
        # Keep reading (INFO logs would otherwise fill the pipe and block the stack).
        reader = threading.Thread(
            target=lambda: output.extend(iter(proc.stdout.readline, "")),  # type: ignore[union-attr]
            daemon=True,
        )
        reader.start()

        base = f"http://127.0.0.1:{port}"
        health = httpx.get(base + "/health", timeout=10)
        assert health.status_code == 200, health.text
        assert all(c["ok"] for c in health.json()["components"].values())

        created = subprocess.run(
            [sys.executable, "-m", "relay", "tenants", "create", "--name", "e2e", "--json"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        key = {"Authorization": "Bearer " + json.loads(created.stdout)["api_key"]}
        assert httpx.post(base + "/v1/ping-task", json={}, timeout=10).status_code == 401
        sent = httpx.post(base + "/v1/ping-task", json={"message": "e2e"}, headers=key, timeout=10)
        task_id = sent.json()["task_id"]
        result = httpx.get(f"{base}/v1/tasks/{task_id}?wait=20", headers=key, timeout=30).json()
        assert result["state"] == "SUCCESS"
        assert result["result"]["pong"] == "e2e"

        tree = psutil.Process(proc.pid).children(recursive=True)
        names = " ".join(" ".join(p.cmdline()) for p in tree)
        assert "redis-server" in names
        assert len(tree) >= 5  # redis, worker (+ pool), beat, api (+ gevent worker)
    finally:
        stopping = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    stopped_in = time.monotonic() - stopping
    reader.join(10)
    assert proc.returncode == 0, "".join(output)
    # In order: no new requests, nothing newly scheduled, the worker's tasks, then Redis.
    messages = [json.loads(line)["message"] for line in output if line.startswith("{")]
    steps = [m for m in messages if m.startswith(("stopping ", "relay stopped", "embedded redis"))]
    steps += [m for m in messages if " stopped in " in m and not m.startswith("relay")]
    order = [m.split(" (")[0] for m in steps if m.startswith("stopping ")]
    assert order == ["stopping relay", "stopping api", "stopping beat", "stopping worker"], steps
    assert {m.split()[0] for m in steps if " stopped in " in m} >= {"api", "beat", "worker"}
    assert "embedded redis stopped" in messages
    assert messages.index("embedded redis stopped") > max(
        i for i, m in enumerate(messages) if m.startswith("worker stopped in")
    )
    print(f"relay up stopped in {stopped_in:.1f}s: {steps}")
    assert stopped_in < 60, stopped_in  # the worker has nothing running: well within its bound
    _, alive = psutil.wait_procs(tree, timeout=10)
    assert alive == [], f"processes left behind: {alive}"
    assert not (tmp_path / "var" / "redis" / "redis.sock").exists()
