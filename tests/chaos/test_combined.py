"""Combined drill: workers SIGKILLed (whole process groups) and Redis SIGKILLed and restarted in
the same run, one worker dying together with Redis. Every keyed task's effect happens exactly
once, the API never answers 500, and all work is done within 60 s after the last fault.

What beat does (outbox relay, reaper) runs in the drill's own loop on a short fuse, as in R1-R3.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from relay.app_factory import create_app
from relay.config import Settings
from relay.models.base import Base
from relay.runtime import Runtime
from relay.tasks.reaper import Reaper
from tests.chaos.drills import (
    enqueue,
    kill_group,
    processed,
    recover,
    row,
    start_worker,
    worker_env,
)
from tests.integration.test_api_support import Api, admin_settings
from tests.outages import OwnRedis
from tests.waiting import wait_until

PREFIX = "rc"
WITHIN = 60.0  # seconds after the last fault by which every effect must be applied


def _progress(runtime: Runtime, target: int) -> None:
    """Wait for ``target`` effects, running beat's safety nets meanwhile."""
    reaper = Reaper(runtime)

    def reached() -> bool:
        try:
            runtime.outbox.relay_pending(grace_seconds=0)
            reaper.run()
        except Exception:  # Redis may be reconnecting: the next pass tries again
            pass
        return processed(runtime, PREFIX) >= target

    wait_until(reached, timeout=120, what=f"{target} effects")


def _drill(settings: Settings, tmp_path: Path, *, aof: bool, tasks: int) -> None:
    server = OwnRedis(tmp_path / "redis", aof=aof).start()
    own = settings.model_copy(
        update={
            "redis": settings.redis.model_copy(update={"url": server.url}),
            "celery": settings.celery.model_copy(update={"stale_after": 2.0, "lost_after": 2.0}),
        }
    )
    app = create_app(admin_settings(own))
    runtime: Runtime = app.extensions["relay"]
    Base.metadata.create_all(runtime.db.engine)
    env = worker_env(runtime)
    log = tmp_path / "workers.log"
    workers = [start_worker(env, f"rc-{i}@drill", log, concurrency=2) for i in (0, 1)]
    client = app.test_client()
    probe = Api(app).create_tenant("probe", plan="enterprise")
    answers: Counter[int] = Counter()
    restarts = 0

    def replace(index: int) -> None:
        nonlocal restarts
        kill_group(workers[index])
        restarts += 1
        workers[index] = start_worker(env, f"rc-{index}-{restarts}@drill", log, concurrency=2)

    try:
        enqueue(runtime, PREFIX, tasks)
        _progress(runtime, tasks // 5)
        replace(0)
        _progress(runtime, 2 * tasks // 5)
        # A worker and Redis die together; the API is probed while Redis is down.
        kill_group(workers[1])
        server.kill()
        fault = time.monotonic()
        while time.monotonic() - fault < 3:
            answers[
                client.post(
                    "/v1/ping-task", json={"message": "probe"}, headers=probe.headers
                ).status_code
            ] += 1
            answers[client.get("/health").status_code] += 1
        server.start()
        restarts += 1
        workers[1] = start_worker(env, f"rc-1-{restarts}@drill", log, concurrency=2)
        _progress(runtime, 3 * tasks // 5)
        replace(0)  # and one more while the others still recover from the restart
        recovery = recover(runtime, PREFIX, tasks, timeout=WITHIN + 120)
    finally:
        for worker in workers:
            kill_group(worker)
        runtime.close()
        server.stop()
    applied = processed(runtime, PREFIX)
    persistence = "AOF" if aof else "no persistence"
    row(
        f"combined: 3 worker SIGKILLs + Redis SIGKILLed and restarted ({persistence})",
        tasks,
        applied,
        recovery,
        answers,
    )
    assert applied == tasks
    assert 500 not in answers
    assert 401 not in answers  # the probe reached the ping path
    assert answers[503] > 0
    assert recovery <= WITHIN, f"the work took {recovery:.1f} s after the last fault"


@pytest.mark.chaos
@pytest.mark.timeout(600)
@pytest.mark.parametrize("aof", [False, True], ids=["no-persistence", "aof"])
def test_combined_kills_and_redis_restart(settings: Settings, tmp_path: Path, aof: bool) -> None:
    _drill(settings, tmp_path, aof=aof, tasks=1000)
