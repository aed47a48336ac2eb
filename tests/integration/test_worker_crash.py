"""Crash drill: workers are SIGKILLed mid-run and no task is lost or applied twice.

Two real worker processes drain 500 ``relay.canary`` tasks enqueued through the outbox, each
with its own idempotency key (its effect is the processed key itself). A worker is killed with
SIGKILL five times, whole process group, and restarted each time. The reaper then recovers what
the dead workers held: every key is processed exactly once and no record is left STARTED.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from relay.models import ProcessedKey, TaskRecord, TaskStatus
from relay.runtime import Runtime
from relay.tasks.reaper import Reaper
from tests.waiting import wait_until

TASKS = 500
KILLS = 5


def _worker(env: dict[str, str], name: str, log: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "relay", "worker", "-Q", "monitor", "-c", "1", "-n", name]
    with log.open("ab") as out:
        return subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _kill(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _processed(runtime: Runtime) -> int:
    with runtime.db.session() as session:
        query = select(func.count()).where(ProcessedKey.idempotency_key.like("crash:%"))
        return int(session.scalar(query) or 0)


def _unfinished(runtime: Runtime) -> int:
    with runtime.db.session() as session:
        running = (TaskStatus.STARTED, TaskStatus.RECEIVED, TaskStatus.PENDING, TaskStatus.RETRY)
        query = select(func.count()).where(TaskRecord.status.in_(running))
        return int(session.scalar(query) or 0)


def test_killed_workers_lose_no_task(runtime: Runtime, tmp_path: Path) -> None:
    settings = runtime.settings
    env = dict(
        os.environ,
        RELAY_DATABASE_URL=settings.database_url,
        RELAY_REDIS_URL=str(settings.redis.url),
        RELAY_VAR_DIR=str(settings.var_dir),
        RELAY_CELERY_HEARTBEAT_INTERVAL="0.5",
        RELAY_LOG_LEVEL="WARNING",
    )
    log = tmp_path / "workers.log"
    workers = [_worker(env, f"crash{i}@drill", log) for i in range(2)]
    try:
        for batch in range(TASKS // 100):
            with runtime.db.transaction() as session:
                for n in range(batch * 100, (batch + 1) * 100):
                    runtime.outbox.enqueue(
                        session, "relay.canary", args=[f"t{n}"], idempotency_key=f"crash:{n}"
                    )
        for kill in range(KILLS):
            # Kill while work is in flight: after some progress, before the queue runs dry.
            target = (kill + 1) * TASKS // (KILLS + 2)
            wait_until(lambda t=target: _processed(runtime) >= t, timeout=120, what="progress")
            victim = kill % len(workers)
            _kill(workers[victim])
            workers[victim] = _worker(env, f"crash{victim}-{kill}@drill", log)

        # The reaper, on a short fuse, recovers the work the dead workers held.
        runtime.settings = settings.model_copy(
            update={
                "celery": settings.celery.model_copy(update={"stale_after": 2.0, "lost_after": 2.0})
            }
        )
        reaper = Reaper(runtime)
        totals: dict[str, int] = {}

        def recovered() -> bool:
            runtime.outbox.relay_pending(grace_seconds=0)
            for name, count in reaper.run().as_dict().items():
                totals[name] = totals.get(name, 0) + count
            return _processed(runtime) == TASKS and _unfinished(runtime) == 0

        wait_until(recovered, timeout=150, what="every task to be processed once")
    finally:
        for proc in workers:
            _kill(proc)

    with runtime.db.session() as session:
        keys = set(session.scalars(select(ProcessedKey.idempotency_key)))
    assert keys >= {f"crash:{n}" for n in range(TASKS)}
    assert _processed(runtime) == TASKS
    started = (TaskStatus.STARTED, TaskStatus.RECEIVED)
    with runtime.db.session() as session:
        left = session.scalar(select(func.count()).where(TaskRecord.status.in_(started)))
    assert left == 0
    # The drill only proves something if the dead workers really left work behind.
    assert sum(totals.values()) > 0, totals
