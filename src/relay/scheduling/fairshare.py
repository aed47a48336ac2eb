"""Weighted fair share across tenants, as in Linux CFS: a pure policy (no IO).

Each active tenant carries a *virtual runtime*: the work it consumed divided by its weight. The
next task is released from the waiting tenant with the smallest virtual runtime, so over time each
tenant's share of the work approaches ``weight / sum(weights)``. Work is task run time in seconds
by default, or a cost the task declares (pages, tokens).

Two rules keep it honest:

* **No banked credit.** A tenant that becomes active starts at ``floor``, the current minimum
  virtual runtime of the active tenants (the last one seen while nobody is active), so idling does
  not earn a burst later. It starts ``NEWCOMER_LEAD`` below, so that it is served next rather
  than after the tenants tied at the floor. The floor follows the minimum down as well as up: a
  release is charged an estimate that the finish corrects, and a floor left above the corrected
  minimum would make newcomers wait behind the incumbents' overcharge.
* **No escape from debt.** A tenant going idle with a virtual runtime above the floor keeps it
  (``idle``), so leaving and coming back does not wipe out what it consumed.

The Redis adapter (``fairshare_redis``) runs exactly these rules inside Lua; ties are broken by
tenant id in both, so the two produce the same sequence of picks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

MIN_CHARGE = 1e-6
"""Smallest work charged for a pick: a zero-cost task must still move its tenant forward."""

NEWCOMER_LEAD = 1e-6
"""A tenant becoming active starts this far below the floor: it wins the tie against tenants
sitting exactly at the floor (it has had no service yet). A microsecond is not a credit."""


@dataclass
class FairShare:
    """Virtual runtimes of the active tenants and the pick rule."""

    floor: float = 0.0  # where a tenant becoming active starts (less NEWCOMER_LEAD)
    vruntimes: dict[str, float] = field(default_factory=dict)
    weights: dict[str, int] = field(default_factory=dict)
    idle: dict[str, float] = field(default_factory=dict)

    def activate(self, tenant: str, weight: int) -> float:
        """Mark ``tenant`` active (idempotent) with ``weight``; returns its virtual runtime."""
        if weight < 1:
            raise ValueError("weight must be at least 1")
        self.weights[tenant] = weight
        current = self.vruntimes.get(tenant)
        if current is None:
            current = self.floor - NEWCOMER_LEAD
            debt = self.idle.pop(tenant, None)
            if debt is not None and debt > current:
                current = debt
            self.vruntimes[tenant] = current
        return current

    def deactivate(self, tenant: str) -> None:
        """``tenant`` has nothing waiting or running any more."""
        value = self.vruntimes.pop(tenant, None)
        if value is not None and value > self.floor:
            self.idle[tenant] = value
        self._advance_floor()

    def charge(self, tenant: str, work: float) -> float:
        """Add ``work`` (may be negative: the correction of an estimate) to ``tenant``."""
        value = self.vruntimes[tenant] + work / self.weights[tenant]
        self.vruntimes[tenant] = value
        self._advance_floor()
        return value

    def pick(self, candidates: Iterable[str]) -> str | None:
        """The candidate with the smallest virtual runtime (ties: smallest id), or None."""
        best: tuple[float, str] | None = None
        for tenant in candidates:
            key = (self.vruntimes[tenant], tenant)
            if best is None or key < best:
                best = key
        return None if best is None else best[1]

    def pick_and_charge(self, candidates: Iterable[str], work: float) -> str | None:
        """Pick the next tenant and charge it ``work`` (at least ``MIN_CHARGE``) in one step."""
        tenant = self.pick(candidates)
        if tenant is not None:
            self.charge(tenant, max(work, MIN_CHARGE))
        return tenant

    def vruntime(self, tenant: str) -> float | None:
        """Virtual runtime of an active tenant (None when inactive)."""
        return self.vruntimes.get(tenant)

    def _advance_floor(self) -> None:
        if self.vruntimes:
            self.floor = min(self.vruntimes.values())
        # A debt at or below the floor no longer changes where its tenant starts.
        for tenant in [t for t, v in self.idle.items() if v <= self.floor]:
            del self.idle[tenant]


def shares(work: dict[str, float]) -> dict[str, float]:
    """Each tenant's fraction of the total work."""
    total = sum(work.values())
    return {t: (w / total if total else 0.0) for t, w in work.items()}


def jain_index(values: Iterable[float]) -> float:
    """Jain's fairness index: 1.0 when all values are equal, 1/n when one takes everything."""
    xs = list(values)
    if not xs:
        return 1.0
    square_sum = sum(x * x for x in xs)
    return (sum(xs) ** 2) / (len(xs) * square_sum) if square_sum else 1.0
