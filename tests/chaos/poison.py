"""A task that kills the worker process running it (loaded by drills with ``--include``)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from relay.catalog import TaskSpec
from relay.tasks.base import RelayTask, relay_task

POISON = TaskSpec("tests.chaos.poison", "monitor")


@relay_task(POISON)
def poison(self: RelayTask, journal: str) -> None:
    """Note the run in ``journal``, then die like an out-of-memory kill would."""
    with Path(journal).open("a") as out:
        out.write("run\n")
    os.kill(os.getpid(), signal.SIGKILL)
