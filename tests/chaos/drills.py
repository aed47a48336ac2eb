"""What the drills share: worker processes, keyed canary tasks, recovery and the printed row."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select

from relay.models import ProcessedKey
from relay.runtime import Runtime
from relay.tasks.reaper import Reaper
from tests.waiting import wait_until


def worker_env(runtime: Runtime, **extra: str) -> dict[str, str]:
    """The environment of a worker process sharing ``runtime``'s database and Redis."""
    settings = runtime.settings
    return dict(
        os.environ,
        RELAY_DATABASE_URL=settings.database_url,
        RELAY_REDIS_URL=str(settings.redis.url),
        RELAY_VAR_DIR=str(settings.var_dir),
        RELAY_CELERY_HEARTBEAT_INTERVAL="0.5",
        RELAY_LOG_LEVEL="WARNING",
        **extra,
    )


def start_worker(
    env: dict[str, str], name: str, log: Path, concurrency: int = 1
) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "relay", "worker", "-Q", "monitor",
            "-c", str(concurrency), "-n", name]  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the worker and its pool children at once."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def enqueue(runtime: Runtime, prefix: str, count: int) -> None:
    """``count`` canary tasks through the outbox, each with its own idempotency key."""
    for start in range(0, count, 500):
        with runtime.db.transaction() as session:
            for n in range(start, min(count, start + 500)):
                runtime.outbox.enqueue(
                    session, "relay.canary", args=[f"t{n}"], idempotency_key=f"{prefix}:{n}"
                )


def processed(runtime: Runtime, prefix: str) -> int:
    """Effects applied: processed keys of the drill (a key can exist once)."""
    with runtime.db.session() as session:
        query = select(func.count()).where(ProcessedKey.idempotency_key.like(f"{prefix}:%"))
        return int(session.scalar(query) or 0)


def recover(runtime: Runtime, prefix: str, count: int, timeout: float) -> float:
    """Run beat's safety nets (outbox relay, reaper) until every effect is applied; seconds."""
    started = time.monotonic()
    reaper = Reaper(runtime)

    def done() -> bool:
        try:
            runtime.outbox.relay_pending(grace_seconds=0)
            reaper.run()
        except Exception:  # a service may still be coming back: the next pass tries again
            return False
        return processed(runtime, prefix) >= count

    wait_until(done, timeout=timeout, what=f"all {count} effects of {prefix}")
    return time.monotonic() - started


def row(drill: str, tasks: int, applied: int, recovery: float, api: Counter[int] | None) -> str:
    answers = ", ".join(f"{k}: {v}" for k, v in sorted(api.items())) if api else "not probed"
    line = f"| {drill} | {tasks} | {tasks - applied} | 0 | {recovery:.1f} s | {answers} |"
    print("\n" + line)
    return line


REPO = Path(__file__).resolve().parents[2]


def start_worker_on(
    env: dict[str, str],
    name: str,
    log: Path,
    queues: str,
    concurrency: int = 1,
    include: str | None = None,
) -> subprocess.Popen[bytes]:
    """A ``relay worker`` on ``queues`` (comma-separated), optionally with a test task module."""
    argv = [sys.executable, "-m", "relay", "worker", "-Q", queues,
            "-c", str(concurrency), "-n", name]  # fmt: skip
    if include:
        argv += ["--include", include]
    child_env = dict(env, PYTHONPATH=str(REPO))
    with log.open("ab") as out:
        return subprocess.Popen(
            argv, env=child_env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def enqueue_tenant(
    runtime: Runtime,
    prefix: str,
    count: int,
    *,
    tenant_id: str,
    task: str,
    queue: str,
    args: list[object],
) -> None:
    """``count`` keyed tasks of one tenant through the outbox (fair queues go to the scheduler);
    each gets ``args`` followed by its own idempotency key."""
    with runtime.db.transaction() as session:
        for n in range(count):
            runtime.outbox.enqueue(
                session,
                task,
                args=[*args, f"{prefix}:{n}"],
                tenant_id=tenant_id,
                queue=queue,
                idempotency_key=f"{prefix}:{n}",
            )


def recover_fair(runtime: Runtime, prefix: str, count: int, timeout: float) -> float:
    """As ``recover``, with the scheduler's safety tick (beat's job) in each pass; seconds."""
    started = time.monotonic()
    reaper = Reaper(runtime)

    def done() -> bool:
        try:
            runtime.dispatcher.tick()
            runtime.outbox.relay_pending(grace_seconds=0)
            reaper.run()
        except Exception:  # a service may still be coming back: the next pass tries again
            return False
        return processed(runtime, prefix) >= count

    wait_until(done, timeout=timeout, what=f"all {count} effects of {prefix}")
    return time.monotonic() - started


def counted_row(
    drill: str,
    tasks: int,
    applied: int,
    duplicated: int,
    recovery: float,
    api: Counter[int] | None,
) -> str:
    """The drill's row where the drill counted its duplicated effects itself."""
    answers = ", ".join(f"{k}: {v}" for k, v in sorted(api.items())) if api else "not probed"
    lost = tasks - applied
    line = f"| {drill} | {tasks} | {lost} | {duplicated} | {recovery:.1f} s | {answers} |"
    print("\n" + line)
    return line
