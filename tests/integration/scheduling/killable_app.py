"""A relay worker process for the SIGKILL test: its task holds a slot until the process dies.

Started by the test as ``celery -A tests.integration.scheduling.killable_app worker``, with
``RELAY_*`` pointing at the test's Redis and ``FAIR_PREFIX`` / ``FAIR_LEASE_TTL`` at its scheduler.
"""

from __future__ import annotations

import os
import time
from typing import Any

from relay.composition import create_runtime
from relay.config import load_settings
from relay.scheduling.dispatcher import FairDispatcher
from relay.scheduling.gate import run_fairly
from relay.scheduling.settings import SchedulingSettings
from relay.scheduling.tenant_queue import RedisTenantQueue

PREFIX = os.environ["FAIR_PREFIX"]
runtime = create_runtime(load_settings())
celery = runtime.celery
settings = SchedulingSettings(key_prefix=PREFIX, lease_ttl=float(os.environ["FAIR_LEASE_TTL"]))
dispatcher = FairDispatcher(
    RedisTenantQueue(runtime.redis, settings), celery, settings, runtime.settings.tenancy
)


@celery.task(name="tests.fair_job", bind=True)
def fair_job(self: Any, mode: str) -> None:
    def hold() -> None:
        runtime.redis.rpush(f"{PREFIX}:started", self.request.id)
        time.sleep(300)  # until SIGKILL

    run_fairly(dispatcher, self.request, hold)
