"""A worker killed with SIGKILL while holding a tenant's slots never leaves the tenant stuck."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from relay.config import Plan, TenancySettings
from relay.runtime import Runtime
from relay.scheduling.dispatcher import FairDispatcher
from relay.scheduling.gate import run_fairly
from relay.scheduling.settings import SchedulingSettings
from relay.scheduling.tenant_queue import RedisTenantQueue
from tests.conftest import run_worker

QUEUE = "dataset"
LEASE_TTL = 1.0
TICK = 0.2
ROOT = Path(__file__).resolve().parents[3]


def _start_worker(runtime: Runtime, prefix: str) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        RELAY_REDIS_URL=runtime.redis_url,
        RELAY_VAR_DIR=str(runtime.settings.var_dir),
        RELAY_DATABASE_URL=runtime.settings.database_url,
        RELAY_LOG_LEVEL="WARNING",
        FAIR_PREFIX=prefix,
        FAIR_LEASE_TTL=str(LEASE_TTL),
    )
    argv = [
        sys.executable, "-m", "celery", "-A", "tests.integration.scheduling.killable_app:celery",
        "worker", "-P", "prefork", "-c", "2", "-Q", QUEUE, "-l", "WARNING",
        "--without-mingle", "--without-gossip", "--without-heartbeat",
    ]  # fmt: skip
    return subprocess.Popen(
        argv, cwd=ROOT, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def test_sigkilled_worker_holding_leases_does_not_strand_the_tenant(runtime: Runtime) -> None:
    prefix = f"test:kill:{uuid.uuid4().hex[:8]}"
    settings = SchedulingSettings(key_prefix=prefix, lease_ttl=LEASE_TTL, tick_interval=TICK)
    tenancy = TenancySettings(concurrency={Plan.SANDBOX: 2})
    dispatcher = FairDispatcher(
        RedisTenantQueue(runtime.redis, settings), runtime.celery, settings, tenancy
    )
    ids = [
        dispatcher.submit("victim", Plan.SANDBOX, "tests.fair_job", ["x"], queue=QUEUE)
        for _ in range(5)
    ]
    held = ids[:2]

    worker = _start_worker(runtime, prefix)
    try:
        started = {runtime.redis.blpop([f"{prefix}:started"], timeout=60)[1] for _ in held}  # type: ignore[index]
        assert started == set(held), "the doomed worker runs the first two items"
        [state] = dispatcher.queue.snapshot(QUEUE)
        assert (state.running, state.waiting) == (2, 3)
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
    killed_at = time.monotonic()

    done = threading.Condition()
    ran: list[tuple[str, float]] = []

    @runtime.celery.task(name="tests.fair_job", bind=True)
    def fair_job(self: Any, mode: str) -> None:
        def body() -> None:
            with done:
                ran.append((self.request.id, time.monotonic()))
                done.notify_all()

        run_fairly(dispatcher, self.request, body)

    with run_worker(runtime, [QUEUE], concurrency=2):
        deadline = killed_at + LEASE_TTL + 15
        with done:
            # beat's job, at a test's pace: tick until everything ran
            while len(ran) < len(ids) and time.monotonic() < deadline:
                dispatcher.tick()
                done.wait(TICK)
    dispatcher.close()

    assert sorted(task_id for task_id, _ in ran) == sorted(ids), "each item ran once here"
    waiting_resumed = min(at for task_id, at in ran if task_id not in held)
    # The slots come free when the leases expire, and the next tick hands them on.
    assert waiting_resumed - killed_at <= LEASE_TTL + 3 * TICK + 1.0
    assert dispatcher.queue.snapshot(QUEUE) == []
    assert dispatcher.queue.stats(QUEUE)["reclaimed"] == 2
