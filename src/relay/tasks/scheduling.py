"""``relay.scheduling.tick``: the fair scheduler's periodic safety step, on beat.

Dispatch happens when work is submitted and when tasks end; the tick reclaims expired leases
(a worker killed mid-task) and refills release windows, so nothing waits forever.
"""

from __future__ import annotations

from relay import catalog
from relay.tasks.base import RelayTask, relay_task


@relay_task(catalog.SCHEDULING_TICK)
def scheduling_tick(self: RelayTask) -> dict[str, int]:
    """Reclaim expired slots and release what they were holding back."""
    report = self.runtime.dispatcher.tick()
    return {"reclaimed": report.reclaimed, "released": report.released, "lost": len(report.lost)}
