"""Heartbeat for the leases of running tasks: one thread per process renews them all.

A running task's slot expires ``lease_ttl`` seconds after its last renewal; this thread renews
every live lease each ``lease_ttl / 3`` seconds in one script call per queue. When a worker dies
the heartbeat dies with it and the slots are reclaimed by the next tick.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from dataclasses import dataclass

from relay.background import Background
from relay.scheduling.tenant_queue import TenantQueue

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeldLease:
    """A slot this process holds: the item and the token of its release."""

    queue: str
    task_id: str
    token: str


class LeaseRenewer:
    """Renews held leases in the background (started lazily, restarted after a fork)."""

    def __init__(
        self, queue: TenantQueue, interval: float, *, background: Background | None = None
    ) -> None:
        self.queue = queue
        self.interval = interval
        self._held: dict[str, HeldLease] = {}
        self._lock = threading.Lock()
        owner = background if background is not None else Background()
        self._job = owner.periodic("lease-renewer", self._renew, interval)
        self.lost: list[str] = []  # ids whose lease was gone at renewal (last few, for tests)

    def hold(self, lease: HeldLease) -> None:
        """Start renewing ``lease``."""
        with self._lock:
            self._held[lease.task_id] = lease
        self._job.ensure()

    def drop(self, task_id: str) -> None:
        """Stop renewing the lease of ``task_id``."""
        with self._lock:
            self._held.pop(task_id, None)

    def held(self) -> list[HeldLease]:
        """Leases currently renewed."""
        with self._lock:
            return list(self._held.values())

    def renew_now(self) -> list[str]:
        """Renew every held lease once; returns the ids whose lease was lost."""
        by_queue: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for lease in self.held():
            by_queue[lease.queue].append((lease.task_id, lease.token))
        lost: list[str] = []
        for queue, pairs in by_queue.items():
            lost.extend(self.queue.renew(queue, pairs))
        with self._lock:
            # A task that finished while we renewed dropped its lease: not lost, just done.
            lost = [task_id for task_id in lost if task_id in self._held]
        if lost:
            # The task still runs but its slot was reclaimed: it may now run twice.
            log.warning(
                "lease lost while running",
                extra={"action": "scheduling.lease_lost", "task_ids": lost},
            )
            for task_id in lost:
                self.drop(task_id)
            self.lost = (self.lost + lost)[-100:]
        return lost

    def stop(self) -> None:
        """Stop the thread (leases then lapse after ``lease_ttl``)."""
        self._job.stop()

    def _renew(self) -> None:
        try:
            self.renew_now()
        except Exception:
            # Redis blips are retried by redis-py; anything left is logged and retried.
            log.exception("lease renewal failed", extra={"action": "scheduling.renew_failed"})
