"""A worker killed mid-run: the run's stream still ends with a terminal event once the reaper ran.

A real ``relay worker`` process runs the workflow; it is SIGKILLed (whole process group) while
the run streams. Its liveness beats stop, the reaper writes the final ``error`` event
(``worker_lost``) and fails the record; the client's stream ends with it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from relay.config import Settings
from relay.tasks.reaper import Reaper
from tests.integration.streaming.support import SSEClient, streaming_stack, workflow_graph
from tests.waiting import wait_until

REPLY = " ".join(f"slow{i}" for i in range(400))


def _worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        RELAY_DATABASE_URL=settings.database_url,
        RELAY_REDIS_URL=str(settings.redis.url),
        RELAY_VAR_DIR=str(settings.var_dir),
        RELAY_STREAMING_HEARTBEAT_INTERVAL="0.2",
        RELAY_WORKFLOW_LLM_TOKEN_DELAY="0.02",
        RELAY_WORKFLOW_LLM_REPLY=REPLY,
        RELAY_LOG_LEVEL="WARNING",
    )
    argv = [sys.executable, "-m", "relay", "worker", "-Q", "workflow_sandbox", "-c", "1"]
    with log.open("ab") as out:
        return subprocess.Popen(
            [*argv, "-n", "doomed@sse"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def test_a_killed_workers_run_still_ends_with_a_terminal_event(
    settings: Settings, tmp_path: Path
) -> None:
    with streaming_stack(settings, worker=False, worker_lost_after=1.0) as stack:
        runtime = stack.runtime
        app_id = stack.publish_app(workflow_graph(llm_nodes=1))
        worker = _worker(runtime.settings, tmp_path / "worker.log")
        client = SSEClient(stack.url, stack.tenant, timeout=60)
        body = {"app_id": app_id, "inputs": {"topic": "t"}, "user": "alice"}
        seen: list[str] = []
        last_data = ""
        try:
            with client.open("POST", "/v1/workflows/run", json=body) as (response, events):
                run_id = response.headers["X-Relay-Run-Id"]
                for event in events:
                    seen.append(event.event)
                    last_data = event.data
                    if event.event == "text_chunk" and seen.count("text_chunk") == 5:
                        os.killpg(worker.pid, signal.SIGKILL)
                        worker.wait()
                        reaper = Reaper(runtime)
                        wait_until(lambda r=reaper: r.run().lost_runs, timeout=20, what="reaper")
        finally:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
        assert seen[-1] == "run_error", (seen[-5:], (tmp_path / "worker.log").read_text()[-2000:])
        assert '"code":"worker_lost"' in last_data
        assert seen.count("text_chunk") < 100
        detail = client.client.get(f"/v1/workflows/runs/{run_id}", params={"user": "alice"})
        assert detail.json()["status"] == "failed"
        assert "stopped" in detail.json()["error"]
        # The reaper ends a run once: the next pass finds nothing.
        assert Reaper(runtime).run().lost_runs == 0
        client.close()
