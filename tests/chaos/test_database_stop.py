"""R3: PostgreSQL (the test's own cluster) stopped mid-run, like a crash, then started again.

Tasks that hit the outage retry on the infrastructure policy (backoff to minutes) instead of
burning their attempts in seconds; the API answers 503 while the database is down; every effect
is applied once after it is back, without a manual step.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from relay.app_factory import create_app
from relay.config import Settings
from relay.migrations import upgrade
from relay.models import DeadLetter
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
from tests.integration.test_api_support import Api, admin_settings
from tests.outages import OwnPostgres
from tests.waiting import wait_until


def _drill(settings: Settings, tmp_path: Path, tasks: int, outage: float) -> None:
    server = OwnPostgres().init().start()
    upgrade(server.url)
    own = settings.model_copy(
        update={
            "database": settings.database.model_copy(update={"url": server.url}),
            "celery": settings.celery.model_copy(update={"stale_after": 3.0, "lost_after": 3.0}),
        }
    )
    app = create_app(admin_settings(own))
    runtime: Runtime = app.extensions["relay"]
    client = app.test_client()
    tenant = Api(app).create_tenant()
    answers: Counter[int] = Counter()
    workers = []
    try:
        env = worker_env(runtime)
        workers = [start_worker(env, "r3@drill", tmp_path / "worker.log", concurrency=2)]
        enqueue(runtime, "r3", tasks)
        wait_until(lambda: processed(runtime, "r3") >= tasks // 4, timeout=90, what="progress")
        server.stop()
        fault = time.monotonic()
        while time.monotonic() - fault < outage:
            answers[client.get("/v1/apps", headers=tenant.headers).status_code] += 1
            answers[client.get("/health").status_code] += 1
        server.start()
        recovery = recover(runtime, "r3", tasks, timeout=150)
        applied = processed(runtime, "r3")
        with runtime.db.session() as session:
            letters = int(session.scalar(select(func.count()).select_from(DeadLetter)) or 0)
    finally:
        for worker in workers:
            kill_group(worker)
        runtime.close()
        server.remove()
    row(f"R3 PostgreSQL stopped {outage:g} s", tasks, applied, recovery, answers)
    assert applied == tasks
    assert letters == 0, "outage retries must not end in dead letters"
    assert 500 not in answers
    assert answers[503] > 0


@pytest.mark.chaos
def test_r3_short(settings: Settings, tmp_path: Path) -> None:
    _drill(settings, tmp_path, tasks=150, outage=5)


@pytest.mark.chaos
@pytest.mark.timeout(600)
def test_r3_full(settings: Settings, tmp_path: Path) -> None:
    _drill(settings, tmp_path, tasks=1500, outage=10)
