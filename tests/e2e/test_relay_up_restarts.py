"""``relay up`` keeps the stack up: a SIGKILLed child and a SIGKILLed embedded Redis come back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from tests.outages import clean_env, free_port
from tests.waiting import wait_until


def _children(proc: subprocess.Popen[str], marker: str) -> list[psutil.Process]:
    found = []
    for child in psutil.Process(proc.pid).children():
        try:
            if marker in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def _ping(base: str, key: dict[str, str]) -> bool:
    try:
        response = httpx.post(
            base + "/v1/ping-task", json={"message": "again"}, headers=key, timeout=5
        )
        if response.status_code != 202 and response.status_code != 200:
            return False
        task_id = response.json()["task_id"]
        result = httpx.get(f"{base}/v1/tasks/{task_id}?wait=10", headers=key, timeout=15).json()
        return bool(result.get("state") == "SUCCESS")
    except (httpx.HTTPError, ValueError, KeyError):
        return False


# Start-up, two restarts and the ordered stop take well over a minute on a loaded machine.
@pytest.mark.timeout(240)
def test_dead_children_and_redis_are_restarted(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(RELAY_API_PORT=str(port), RELAY_LOG_LEVEL="WARNING")
    log_path = tmp_path / "up.log"
    with log_path.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "relay", "up"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: "relay is up" in log_path.read_text(), timeout=90, what="relay up")
        created = subprocess.run(
            [sys.executable, "-m", "relay", "tenants", "create", "--name", "restarts", "--json"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        key = {"Authorization": "Bearer " + json.loads(created.stdout)["api_key"]}
        beat = _children(proc, "relay beat")
        redis_server = _children(proc, "redis-server")
        assert len(beat) == 1
        assert len(redis_server) == 1
        os.killpg(beat[0].pid, signal.SIGKILL)
        redis_server[0].kill()
        wait_until(
            lambda: "beat exited with -9; restarting it" in log_path.read_text(),
            timeout=10,
            what="the supervisor to notice",
        )
        wait_until(
            lambda: [p for p in _children(proc, "relay beat") if p.pid != beat[0].pid],
            timeout=30,
            what="a new beat",
        )
        wait_until(
            lambda: [p for p in _children(proc, "redis-server") if p.pid != redis_server[0].pid],
            timeout=30,
            what="a new redis-server",
        )
        # The worker and the API reconnect by themselves: a task goes round trip again.
        wait_until(lambda: _ping(base, key), timeout=60, what="a ping task after the restarts")
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, log_path.read_text()
