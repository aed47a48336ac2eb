"""A first delivery writes no delivery count; when its pool process dies, the worker's main
process counts the death, so the next delivery runs as the second attempt."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from relay.models import TaskRecord
from relay.runtime import Runtime
from relay.worker.deliveries import RedisDeliveryCounts
from tests.chaos.drills import worker_env
from tests.outages import stop_process
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]


def test_a_pool_process_death_is_counted_by_the_main_process(
    runtime: Runtime, tmp_path: Path
) -> None:
    env = worker_env(runtime, PYTHONPATH=str(REPO))
    argv = [sys.executable, "-m", "relay", "worker", "-Q", "monitor", "-c", "1",
            "-n", "deliveries@test", "-I", "tests.integration.dying_task"]  # fmt: skip
    journal = tmp_path / "runs.txt"
    journal.touch()
    with (tmp_path / "worker.log").open("ab") as out:
        worker = subprocess.Popen(
            argv, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        result = runtime.celery.send_task(
            "tests.integration.dies_then_succeeds", args=[str(journal), 1], queue="monitor"
        )
        assert result.get(timeout=90) == 2
        # The death is counted once (by the main process); the redelivery counted and uncounted
        # itself, so one unfinished delivery is what is left.
        count = runtime.redis.get(RedisDeliveryCounts.key(result.id))
        assert count is not None
        assert int(count) == 1

        def record() -> TaskRecord | None:
            runtime.lifecycle.flush()
            with runtime.db.session() as session:
                found = session.get(TaskRecord, result.id)
                return found if found is not None and found.status == "SUCCESS" else None

        assert wait_until(record, timeout=30, what="the task record").attempts == 2
    finally:
        stop_process(worker)
