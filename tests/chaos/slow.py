"""A keyed task that takes its time on one worker (loaded by drills with ``--include``).

It sleeps ``seconds`` when it runs on a worker whose name starts with ``slow_on`` (the worker a
drill stops), a moment elsewhere, then applies its effect once per idempotency key and notes it
in ``journal``: one ``applied <key>`` line per effect, so a line seen twice is a duplicate.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from relay.catalog import TaskSpec
from relay.tasks.base import RelayTask, relay_task

SLOW = TaskSpec("tests.chaos.slow", "monitor", soft_time_limit=60, time_limit=90)


@relay_task(SLOW)
def slow(self: RelayTask, key: str, seconds: float, slow_on: str, journal: str) -> bool:
    """Sleep, then apply the effect of ``key`` (False: a duplicate delivery, nothing applied)."""
    hostname = self.request.hostname or ""
    with Path(journal).open("a") as out:
        out.write(f"started {key} {hostname} {os.getpid()}\n")
    time.sleep(seconds if hostname.startswith(slow_on) else 0.05)
    with self.effect() as session:
        if session is None:
            return False
        with Path(journal).open("a") as out:
            out.write(f"applied {key} {hostname}\n")
        return True
