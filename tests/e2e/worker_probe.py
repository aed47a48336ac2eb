"""Imported by a test's ``relay worker --include``: a task counting its runs in a Prometheus
counter of its own, the way a user's task module would."""

from __future__ import annotations

import os
import time

from celery import shared_task
from prometheus_client import Counter

RUNS = Counter("probe_runs", "Runs of the probe task", ["queue"], registry=None)


@shared_task(name="tests.probe_count")
def probe_count() -> int:
    RUNS.labels("monitor").inc()
    time.sleep(
        0.5
    )  # long enough for the other pool child (slow to start on a busy machine) to take work
    return os.getpid()
