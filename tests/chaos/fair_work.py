"""A keyed task on a fair queue that takes a moment (loaded by drills with ``--include``).

It notes each start (task id, key and the pid of the process running it) in a Redis list before
it works, and each applied effect (its key) in another list after the effect's commit, so a
drill can tell which worker holds the tenant's slot, when the tenant ran again, and whether any
key's effect was applied twice.
"""

from __future__ import annotations

import json
import os
import time

from relay.catalog import TaskSpec
from relay.tasks.base import RelayTask, relay_task

FAIR_WORK = TaskSpec("tests.chaos.fair_work", "dataset", soft_time_limit=20, time_limit=30)


def starts_key(prefix: str) -> str:
    return f"{prefix}:starts"


def effects_key(prefix: str) -> str:
    return f"{prefix}:effects"


@relay_task(FAIR_WORK)
def fair_work(self: RelayTask, prefix: str, seconds: float, key: str) -> bool:
    """Note the start, work ``seconds``, apply the keyed effect and note it once committed."""
    redis = self.runtime.redis
    note = {"id": self.request.id, "key": key, "pid": os.getpid(), "at": time.time()}
    redis.rpush(starts_key(prefix), json.dumps(note))
    time.sleep(seconds)
    with self.effect() as session:
        applied = session is not None
    if applied:
        redis.rpush(effects_key(prefix), key)
    return applied
