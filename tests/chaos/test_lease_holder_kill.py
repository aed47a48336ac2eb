"""R7: the worker holding a tenant's fair-scheduling lease is SIGKILLed; the tenant runs again
once the lease lapses (``lease_ttl`` after its last renewal, handed on by the next tick).

One sandbox tenant (one task at a time) has keyed tasks on the fair ``dataset`` queue, served by
two workers. Right after one of its tasks starts, the drill kills the worker running it (the
whole process group), so the tenant's only slot is held by a dead process. The time until the
tenant's next task starts is measured and must stay within the lease TTL plus one tick; every
key's effect is applied exactly once (the killed task runs again elsewhere).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from relay.app_factory import create_app
from relay.config import Settings
from relay.models.base import Base
from relay.runtime import Runtime
from tests.chaos.drills import (
    counted_row,
    enqueue_tenant,
    kill_group,
    processed,
    recover_fair,
    start_worker_on,
    worker_env,
)
from tests.chaos.fair_work import FAIR_WORK, effects_key, starts_key
from tests.waiting import wait_until

QUEUE = FAIR_WORK.queue
TENANT = "r7-tenant"
# How often the drill runs the scheduler's safety tick while it waits (beat's job, at a test's
# pace); the tenant may need one tick after the lease lapses.
TICK = 0.1
SLACK = 1.5  # a tick, the release into Celery and the other worker's pickup, on a busy machine


def _starts(runtime: Runtime, prefix: str) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in runtime.redis.lrange(starts_key(prefix), 0, -1)]


def _holder(workers: list[subprocess.Popen[bytes]], pid: int) -> int | None:
    """Index of the worker whose pool child ``pid`` is (or the worker itself)."""
    try:
        parent = psutil.Process(pid).ppid()
    except psutil.NoSuchProcess:
        return None
    for index, worker in enumerate(workers):
        if worker.pid in (pid, parent):
            return index
    return None


def _drill(
    settings: Settings, tmp_path: Path, *, tasks: int, kills: int, lease_ttl: float, seconds: float
) -> None:
    prefix = f"r7-{time.time_ns()}"
    own = settings.model_copy(
        update={
            "celery": settings.celery.model_copy(update={"stale_after": 2.0, "lost_after": 2.0}),
            "scheduling": settings.scheduling.model_copy(
                update={"lease_ttl": lease_ttl, "tick_interval": TICK}
            ),
        }
    )
    app = create_app(own)
    runtime: Runtime = app.extensions["relay"]
    Base.metadata.create_all(runtime.db.engine)
    env = worker_env(
        runtime,
        RELAY_SCHEDULING_LEASE_TTL=str(lease_ttl),
        RELAY_SCHEDULING_TICK_INTERVAL=str(TICK),
    )
    log = tmp_path / "workers.log"
    include = "tests.chaos.fair_work"
    workers = [start_worker_on(env, f"r7-{i}@drill", log, QUEUE, include=include) for i in (0, 1)]
    gaps: list[float] = []
    killed: list[tuple[str, float]] = []  # the task the dead worker ran, and when it died
    try:
        enqueue_tenant(
            runtime, prefix, tasks, tenant_id=TENANT, task=FAIR_WORK.name, queue=QUEUE,
            args=[prefix, seconds],
        )  # fmt: skip
        for kill in range(kills):
            target = (kill + 1) * tasks // (kills + 2)
            wait_until(
                lambda t=target: runtime.dispatcher.tick() and processed(runtime, prefix) >= t,
                timeout=120,
                what="progress",
            )
            # The next start: its worker holds the tenant's only slot while the task works.
            seen = len(_starts(runtime, prefix))
            note = wait_until(
                lambda s=seen: (_starts(runtime, prefix)[s:] or [None])[0],
                timeout=60,
                what="the tenant's next start",
            )
            victim = _holder(workers, int(note["pid"]))
            assert victim is not None, "a start from a worker the drill did not start"
            kill_group(workers[victim])
            killed_at = time.time()
            killed.append((str(note["id"]), killed_at))
            [state] = runtime.dispatcher.queue.snapshot(QUEUE)
            assert state.running == 1, "the dead worker still holds the tenant's slot"

            def resumed(after: float = killed_at) -> dict[str, Any] | None:
                runtime.dispatcher.tick()
                later = [n for n in _starts(runtime, prefix) if n["at"] > after]
                return later[0] if later else None

            again = wait_until(resumed, timeout=lease_ttl + 60, what="the tenant running again")
            gaps.append(float(again["at"]) - killed_at)
            workers[victim] = start_worker_on(
                env, f"r7-{victim}-{kill}@drill", log, QUEUE, include=include
            )
        recovery = recover_fair(runtime, prefix, tasks, timeout=180)
        applied = processed(runtime, prefix)
        effects = [key.decode() if isinstance(key, bytes) else key
                   for key in runtime.redis.lrange(effects_key(prefix), 0, -1)]  # fmt: skip
        starts = _starts(runtime, prefix)
    finally:
        for worker in workers:
            kill_group(worker)
        runtime.close()
    duplicated = len(effects) - len(set(effects))
    slowest = max(gaps)
    counted_row(
        f"R7 lease holder SIGKILLed {kills}x (lease TTL {lease_ttl:g} s; tenant ran again "
        f"after {', '.join(f'{gap:.1f}' for gap in gaps)} s)",
        tasks,
        applied,
        duplicated,
        recovery,
        None,
    )
    assert applied == tasks
    assert duplicated == 0
    # The task the dead worker held ran again (elsewhere, after the kill).
    for task_id, at in killed:
        assert any(n["id"] == task_id and n["at"] > at for n in starts), task_id
    # The dead worker's lease lapses at most ``lease_ttl`` after its last renewal (before the
    # kill); the next tick hands the slot on.
    assert slowest <= lease_ttl + SLACK, f"the tenant waited {slowest:.1f} s"


@pytest.mark.timeout(120)
def test_r7_short(settings: Settings, tmp_path: Path) -> None:
    _drill(settings, tmp_path, tasks=6, kills=1, lease_ttl=2.0, seconds=0.2)


@pytest.mark.chaos
@pytest.mark.timeout(600)
def test_r7_full(settings: Settings, tmp_path: Path) -> None:
    _drill(settings, tmp_path, tasks=40, kills=3, lease_ttl=30.0, seconds=0.5)
