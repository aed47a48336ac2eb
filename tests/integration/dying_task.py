"""A task that kills its own pool process on its first ``deaths`` runs (loaded with ``-I``)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from relay.catalog import TaskSpec
from relay.tasks.base import RelayTask, relay_task

DIES = TaskSpec("tests.integration.dies_then_succeeds", "monitor")


@relay_task(DIES)
def dies_then_succeeds(self: RelayTask, journal: str, deaths: int) -> int:
    """Note the run in ``journal``; die like an out-of-memory kill while runs <= ``deaths``."""
    with Path(journal).open("a") as out:
        out.write("run\n")
    runs = Path(journal).read_text().count("run")
    if runs <= deaths:
        os.kill(os.getpid(), signal.SIGKILL)
    return runs
