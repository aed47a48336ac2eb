"""R1: keyed tasks while workers are SIGKILLed (whole process groups) again and again.

No effect is lost (every key processed) and none applied twice (one processed key per task);
the reaper and the outbox relay bring back what the dead workers held. The short version runs
in ``make test``; the full one (2,000 tasks, 10 kills) with ``make chaos``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.runtime import Runtime
from tests.chaos.drills import (
    enqueue,
    kill_group,
    processed,
    recover,
    row,
    start_worker,
    worker_env,
)
from tests.waiting import wait_until


def _drill(runtime: Runtime, tmp_path: Path, tasks: int, kills: int) -> None:
    runtime.settings = runtime.settings.model_copy(
        update={
            "celery": runtime.settings.celery.model_copy(
                update={"stale_after": 2.0, "lost_after": 2.0}
            )
        }
    )
    env = worker_env(runtime)
    log = tmp_path / "workers.log"
    workers = [start_worker(env, f"r1-{i}@drill", log, concurrency=2) for i in range(2)]
    try:
        enqueue(runtime, "r1", tasks)
        for kill in range(kills):
            target = (kill + 1) * tasks // (kills + 2)
            wait_until(lambda t=target: processed(runtime, "r1") >= t, timeout=120, what="progress")
            victim = kill % len(workers)
            kill_group(workers[victim])
            workers[victim] = start_worker(env, f"r1-{victim}-{kill}@drill", log, concurrency=2)
        recovery = recover(runtime, "r1", tasks, timeout=180)
    finally:
        for worker in workers:
            kill_group(worker)
    applied = processed(runtime, "r1")
    row(f"R1 {kills} worker SIGKILLs", tasks, applied, recovery, None)
    assert applied == tasks


def test_r1_short(runtime: Runtime, tmp_path: Path) -> None:
    _drill(runtime, tmp_path, tasks=200, kills=3)


@pytest.mark.chaos
@pytest.mark.timeout(600)
def test_r1_full(runtime: Runtime, tmp_path: Path) -> None:
    _drill(runtime, tmp_path, tasks=2000, kills=10)
