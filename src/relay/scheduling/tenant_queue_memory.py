"""``InMemoryTenantQueue``: the tenant queue's state machine in process memory, for unit tests.

It follows the Lua scripts step by step (same states, same order of picks, same charges), with one
lock standing in for Redis' single-threaded script execution and an injectable clock standing in
for Redis ``TIME``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from relay.scheduling.fairshare import MIN_CHARGE, FairShare
from relay.scheduling.settings import SchedulingSettings
from relay.scheduling.tenant_queue import (
    Finished,
    NewItem,
    Outcome,
    Reclaimed,
    Release,
    Started,
    StartStatus,
    Submitted,
    TenantState,
    WaitHistogram,
    check_item,
)


@dataclass
class _Item:
    tenant: str
    kind: str
    body: str
    submitted: int
    cost: float | None
    state: str = "w"
    token: str = ""
    charged: float | None = None
    observed: bool = False
    reclaims: int = 0
    retries: int = 0  # of the running attempt
    early_body: str | None = None  # a retried message that arrived before its attempt ended


@dataclass
class _Queue:
    items: dict[str, _Item] = field(default_factory=dict)
    done: dict[str, int] = field(default_factory=dict)  # finished id -> tombstone expiry
    waiting: dict[str, deque[str]] = field(default_factory=dict)
    leases: dict[str, dict[str, int]] = field(default_factory=dict)  # tq -> id -> expiry
    all_leases: dict[str, int] = field(default_factory=dict)
    limit: dict[str, int] = field(default_factory=dict)
    tenant_tqs: dict[str, set[str]] = field(default_factory=dict)
    count: dict[str, int] = field(default_factory=dict)
    retry: dict[str, int] = field(default_factory=dict)
    estimate: dict[str, float] = field(default_factory=dict)
    fair: FairShare = field(default_factory=FairShare)
    seq: int = 0
    stats: Counter[str] = field(default_factory=Counter)
    hist: dict[str, list[int]] = field(default_factory=dict)
    hist_sum: dict[str, float] = field(default_factory=dict)


def _tq(tenant: str, kind: str) -> str:
    return f"{tenant}|{kind}"


class InMemoryTenantQueue:
    """``TenantQueue`` in memory; ``clock`` returns seconds (advance it to expire leases)."""

    def __init__(
        self, settings: SchedulingSettings, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._lock = threading.Lock()
        self._queues: dict[str, _Queue] = {}

    # --- helpers mirroring the Lua library -----------------------------------------------------

    def _now(self) -> int:
        return int(self.clock() * 1000)

    def _q(self, queue: str) -> _Queue:
        return self._queues.setdefault(queue, _Queue())

    def _runnable(self, q: _Queue, tq: str) -> bool:
        return bool(q.waiting.get(tq)) and len(q.leases.get(tq, {})) < q.limit.get(tq, 1)

    def _lease(self, q: _Queue, tq: str, task_id: str, expires: int) -> None:
        q.leases.setdefault(tq, {})[task_id] = expires
        q.all_leases[task_id] = expires

    def _unlease(self, q: _Queue, tq: str, task_id: str) -> None:
        q.leases.get(tq, {}).pop(task_id, None)
        q.all_leases.pop(task_id, None)

    def _requeue(self, q: _Queue, task_id: str, item: _Item, refund: bool) -> None:
        tq = _tq(item.tenant, item.kind)
        self._unlease(q, tq, task_id)
        if refund and item.charged is not None:
            q.fair.charge(item.tenant, -item.charged)
        if item.early_body is not None:
            item.body, item.early_body = item.early_body, None
        item.state, item.token, item.charged = "w", "", None
        q.waiting.setdefault(tq, deque()).appendleft(task_id)

    def _forget(self, q: _Queue, tenant: str) -> None:
        q.count[tenant] -= 1
        if q.count[tenant] > 0:
            return
        del q.count[tenant]
        for tq in q.tenant_tqs.pop(tenant, set()):
            q.limit.pop(tq, None)
        q.fair.deactivate(tenant)

    def _dispatch(
        self, queue: str, q: _Queue, now: int, self_id: str | None
    ) -> tuple[list[Release], str | None]:
        out: list[Release] = []
        mine: str | None = None
        window = self.settings.window_for(queue)
        while len(q.all_leases) < window:
            candidates = [tq for tq in q.waiting if self._runnable(q, tq)]
            if not candidates:
                break
            # Same order as the Lua sorted set: tenant's vruntime, then the pair's name.
            tq = min(candidates, key=lambda c: (q.fair.vruntimes[c.split("|", 1)[0]], c))
            task_id = q.waiting[tq].popleft()
            if not q.waiting[tq]:
                del q.waiting[tq]
            item = q.items[task_id]
            q.seq += 1
            token = str(q.seq)
            est = item.cost
            if est is None:
                est = q.estimate.get(item.kind, self.settings.default_cost)
            expires = now + int(self.settings.dispatch_ttl * 1000)
            item.state = "l"
            if task_id == self_id:
                item.state, mine = "r", token
                expires = now + int(self.settings.lease_ttl * 1000)
            self._lease(q, tq, task_id, expires)
            item.token, item.charged = token, est
            q.fair.charge(item.tenant, est)
            q.stats["released"] += 1
            if task_id != self_id:
                out.append(
                    Release(
                        queue,
                        task_id,
                        token,
                        item.tenant,
                        item.kind,
                        item.body,
                        item.submitted / 1000,
                    )
                )
        return out, mine

    def _finished(self, q: _Queue, task_id: str, now: int) -> bool:
        expiry = q.done.get(task_id)
        if expiry is not None and expiry <= now:
            del q.done[task_id]
            return False
        return expiry is not None

    # --- protocol ------------------------------------------------------------------------------

    def enqueue_or_acquire(self, queue: str, item: NewItem) -> Submitted:
        """As ``TenantQueue.enqueue_or_acquire``."""
        check_item(queue, item)
        with self._lock:
            now, q = self._now(), self._q(queue)
            if item.task_id in q.items or self._finished(q, item.task_id, now):
                q.stats["duplicate"] += 1
                return Submitted(item.task_id, False, True, ())
            tq = _tq(item.tenant, item.task_type)
            cost = None if item.cost is None else max(float(item.cost), MIN_CHARGE)
            q.items[item.task_id] = _Item(item.tenant, item.task_type, item.body, now, cost)
            q.limit[tq] = item.limit
            q.tenant_tqs.setdefault(item.tenant, set()).add(tq)
            q.count[item.tenant] = q.count.get(item.tenant, 0) + 1
            q.fair.activate(item.tenant, item.weight)
            q.waiting.setdefault(tq, deque()).append(item.task_id)
            q.stats["submitted"] += 1
            out, _ = self._dispatch(queue, q, now, None)
            acquired = any(r.task_id == item.task_id for r in out)
            return Submitted(item.task_id, acquired, False, tuple(out))

    def release_and_pull_next(
        self,
        queue: str,
        task_id: str,
        token: str,
        *,
        outcome: Outcome,
        work: float | None,
        retry_in: float = 0.0,
    ) -> Finished:
        """As ``TenantQueue.release_and_pull_next``."""
        with self._lock:
            now, q = self._now(), self._q(queue)
            item = q.items.get(task_id)
            ours = item is not None and item.state in ("l", "r") and item.token == token
            if item is not None and ours:
                tq = _tq(item.tenant, item.kind)
                self._unlease(q, tq, task_id)
                charged = item.charged or 0.0
                spent = item.cost
                if spent is None:
                    measured = None if work is None else max(float(work), 0.0)
                    spent = charged if measured is None else measured
                    if measured is not None:
                        old = q.estimate.get(item.kind)
                        alpha = self.settings.cost_smoothing
                        q.estimate[item.kind] = (
                            measured if old is None else old + alpha * (measured - old)
                        )
                q.fair.charge(item.tenant, spent - charged)
                if outcome == Outcome.RETRY and item.early_body is not None:
                    self._requeue(q, task_id, item, refund=False)
                elif outcome == Outcome.RETRY:
                    item.state, item.token, item.charged = "y", "", None
                    q.retry[task_id] = (
                        now
                        + int(max(retry_in, 0.0) * 1000)
                        + int(self.settings.dispatch_ttl * 1000)
                    )
                else:
                    del q.items[task_id]
                    q.done[task_id] = now + self.settings.done_retention * 1000
                    self._forget(q, item.tenant)
                q.stats[str(outcome)] += 1
            else:
                q.stats["stale"] += 1
            out, _ = self._dispatch(queue, q, now, None)
            return Finished(ours, tuple(out))

    def start(
        self, queue: str, task_id: str, token: str, *, body: str | None = None, retries: int = 0
    ) -> Started:
        """As ``TenantQueue.start``."""
        with self._lock:
            now, q = self._now(), self._q(queue)
            item = q.items.get(task_id)
            if item is None:
                if self._finished(q, task_id, now):
                    q.stats["duplicate"] += 1
                    return Started(StartStatus.DUPLICATE, "", None, ())
                return Started(StartStatus.UNKNOWN, "", None, ())
            if item.state == "l" and item.token == token:
                self._lease(
                    q,
                    _tq(item.tenant, item.kind),
                    task_id,
                    now + int(self.settings.lease_ttl * 1000),
                )
                item.state, item.retries = "r", retries
                waited = None
                if not item.observed:
                    item.observed = True
                    waited = (now - item.submitted) / 1000
                    self._observe(q, item.tenant, waited)
                return Started(StartStatus.RUN, token, waited, ())
            if item.state == "y":
                if body:
                    item.body = body
                q.retry.pop(task_id, None)
                self._requeue(q, task_id, item, refund=False)
                out, mine = self._dispatch(queue, q, now, task_id)
                if mine is not None:
                    item.retries = retries
                    return Started(StartStatus.RUN, mine, None, tuple(out))
                q.stats["requeued"] += 1
                return Started(StartStatus.REQUEUED, "", None, tuple(out))
            if item.state == "r" and item.token == token and body and retries > item.retries:
                item.early_body = body
                q.stats["requeued"] += 1
                return Started(StartStatus.REQUEUED, "", None, ())
            q.stats["duplicate"] += 1
            return Started(StartStatus.DUPLICATE, "", None, ())

    def _observe(self, q: _Queue, tenant: str, waited: float) -> None:
        bounds = self.settings.wait_buckets
        index = next((i for i, b in enumerate(bounds) if waited <= b), len(bounds))
        q.hist.setdefault(tenant, [0] * (len(bounds) + 1))[index] += 1
        q.hist_sum[tenant] = q.hist_sum.get(tenant, 0.0) + waited

    def renew(self, queue: str, leases: Sequence[tuple[str, str]]) -> list[str]:
        """As ``TenantQueue.renew``."""
        with self._lock:
            now, q = self._now(), self._q(queue)
            lost: list[str] = []
            for task_id, token in leases:
                item = q.items.get(task_id)
                if item is not None and item.state == "r" and item.token == token:
                    expires = now + int(self.settings.lease_ttl * 1000)
                    self._lease(q, _tq(item.tenant, item.kind), task_id, expires)
                else:
                    lost.append(task_id)
            return lost

    def reclaim(self, queue: str) -> Reclaimed:
        """As ``TenantQueue.reclaim``."""
        with self._lock:
            now, q = self._now(), self._q(queue)
            batch = self.settings.reclaim_batch
            reclaimed: list[str] = []
            lost: list[str] = []
            expired = sorted((exp, i) for i, exp in q.all_leases.items() if exp <= now)[:batch]
            for _, task_id in expired:
                item = q.items.get(task_id)
                if item is not None and item.state in ("l", "r"):
                    item.reclaims += 1
                    if item.reclaims > self.settings.max_reclaims:
                        self._unlease(q, _tq(item.tenant, item.kind), task_id)
                        del q.items[task_id]
                        q.done[task_id] = now + self.settings.done_retention * 1000
                        self._forget(q, item.tenant)
                        lost.append(task_id)
                        continue
                    self._requeue(q, task_id, item, refund=True)
                    reclaimed.append(task_id)
                else:
                    q.all_leases.pop(task_id, None)
            lapsed = sorted((d, i) for i, d in q.retry.items() if d <= now)[:batch]
            for _, task_id in lapsed:
                del q.retry[task_id]
                item = q.items.get(task_id)
                if item is not None and item.state == "y":
                    self._requeue(q, task_id, item, refund=False)
                    reclaimed.append(task_id)
            q.stats["reclaimed"] += len(reclaimed)
            if lost:
                q.stats["lost"] += len(lost)
            for task_id in [i for i, expiry in q.done.items() if expiry <= now]:
                del q.done[task_id]
            out, _ = self._dispatch(queue, q, now, None)
            return Reclaimed(tuple(reclaimed), tuple(out), tuple(lost))

    def abandon(self, queue: str, task_id: str, token: str) -> bool:
        """As ``TenantQueue.abandon``."""
        with self._lock:
            q = self._q(queue)
            item = q.items.get(task_id)
            if item is None or item.state != "l" or item.token != token:
                return False
            self._requeue(q, task_id, item, refund=True)
            return True

    def others_waiting(self, queue: str, tenant: str) -> bool:
        """As ``TenantQueue.others_waiting``."""
        with self._lock:
            q = self._q(queue)
            return any(self._runnable(q, tq) and tq.split("|", 1)[0] != tenant for tq in q.waiting)

    def snapshot(self, queue: str) -> list[TenantState]:
        """As ``TenantQueue.snapshot``."""
        with self._lock:
            q = self._q(queue)
            return [
                TenantState(
                    queue=queue,
                    tenant=tenant,
                    weight=q.fair.weights.get(tenant, 1),
                    waiting=sum(len(q.waiting.get(tq, ())) for tq in q.tenant_tqs.get(tenant, ())),
                    running=sum(len(q.leases.get(tq, {})) for tq in q.tenant_tqs.get(tenant, ())),
                    vruntime=q.fair.vruntimes.get(tenant, 0.0),
                )
                for tenant in q.count
            ]

    def wait_histograms(self, queue: str) -> dict[str, WaitHistogram]:
        """As ``TenantQueue.wait_histograms``."""
        with self._lock:
            q = self._q(queue)
            return {t: WaitHistogram(tuple(c), q.hist_sum.get(t, 0.0)) for t, c in q.hist.items()}

    def stats(self, queue: str) -> dict[str, int]:
        """As ``TenantQueue.stats``."""
        with self._lock:
            return dict(self._q(queue).stats)

    def queues(self) -> list[str]:
        """As ``TenantQueue.queues``."""
        with self._lock:
            return sorted(self._queues)
