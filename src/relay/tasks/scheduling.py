"""``relay.scheduling.tick``: the fair scheduler's periodic safety step, on beat.

Dispatch happens when work is submitted and when tasks end; the tick reclaims expired leases
(a worker killed mid-task) and refills release windows, so nothing waits forever.
"""

from __future__ import annotations

from celery import shared_task

from relay.scheduling.hooks import tick
from relay.tasks.base import RelayTask


@shared_task(name="relay.scheduling.tick", base=RelayTask, bind=True)
def scheduling_tick(self: RelayTask) -> dict[str, int]:
    """Reclaim expired slots and release what they were holding back."""
    report = tick(self.runtime)
    return {"reclaimed": report.reclaimed, "released": report.released, "lost": len(report.lost)}
