"""Per-tenant counted semaphores with leases, fed in fair order into a short Celery window.

For each Celery queue the scheduler keeps, per (tenant, task type) pair, a FIFO of waiting items
and a semaphore of at most N leases (N from the tenant's plan). An item is *released* (sent to
Celery) when its pair has a free slot, the queue's in-flight window has room and its tenant has
the smallest virtual runtime among the tenants that could run something (``fairshare``). A lease
lives until the task finishes; a running task renews it (heartbeat) and a lease that expires,
because its worker died, is reclaimed: the item goes back to the head of its list and the slot is
handed on. Every step is one atomic operation, so concurrent producers and workers can never
release an item twice, lose one, or hold more than N slots of a pair.

``TenantQueue`` is the protocol; ``RedisTenantQueue`` (Lua, ``tenant_queue_lua``) is the real one
and ``InMemoryTenantQueue`` (``tenant_queue_memory``) the same state machine for unit tests.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import redis

from relay.errors import InfrastructureError
from relay.scheduling import tenant_queue_lua as lua
from relay.scheduling.fairshare import MIN_CHARGE
from relay.scheduling.settings import SchedulingSettings

_ID = re.compile(r"^[A-Za-z0-9_.:@/-]{1,200}$")


def check_id(kind: str, value: str) -> str:
    """Refuse ids that could break key names (``|`` separates tenant and task type)."""
    if not _ID.match(value):
        raise ValueError(f"{kind} must be 1-200 characters of letters, digits and _.:@/-")
    return value


def check_item(queue: str, item: NewItem) -> None:
    """Refuse an item the scheduler could never release."""
    check_id("queue", queue)
    check_id("tenant", item.tenant)
    check_id("task type", item.task_type)
    if item.limit < 1 or item.weight < 1:
        raise ValueError("limit and weight must be at least 1")


class Outcome(StrEnum):
    """How a task run ended, as far as its slot is concerned."""

    SUCCESS = "success"
    FAILURE = "failure"
    RETRY = "retry"


class StartStatus(StrEnum):
    """What a worker must do with a message the scheduler released."""

    RUN = "run"  # this copy holds the slot: run it
    REQUEUED = "requeued"  # a retried message went back to the fair order: drop this copy
    DUPLICATE = "duplicate"  # a stale or redelivered copy: drop it
    UNKNOWN = "unknown"  # the scheduler never saw this id (or forgot it): run it


@dataclass(frozen=True)
class NewItem:
    """An item to schedule: ``body`` is opaque to the queue (the dispatcher's message)."""

    task_id: str
    tenant: str
    task_type: str
    body: str
    limit: int
    weight: int
    cost: float | None = None


@dataclass(frozen=True)
class Release:
    """An item the scheduler released: the caller must send it to Celery now."""

    queue: str
    task_id: str
    token: str
    tenant: str
    task_type: str
    body: str
    submitted_at: float  # epoch seconds, scheduler clock


@dataclass(frozen=True)
class Submitted:
    """Result of enqueue-or-acquire."""

    task_id: str
    acquired: bool  # released at once (it is among ``released``)
    duplicate: bool  # the id was known already: nothing changed
    released: tuple[Release, ...]


@dataclass(frozen=True)
class Finished:
    """Result of release-and-pull-next."""

    released_slot: bool  # False: the lease was not ours any more (reclaimed or stale copy)
    released: tuple[Release, ...]


@dataclass(frozen=True)
class Started:
    """Result of the start gate."""

    status: StartStatus
    token: str
    waited: float | None  # queue wait (submit to first start) in seconds, first start only
    released: tuple[Release, ...]


@dataclass(frozen=True)
class Reclaimed:
    """Result of reclaiming expired leases."""

    reclaimed: tuple[str, ...]  # back in their lists (then maybe among ``released``)
    released: tuple[Release, ...]
    lost: tuple[str, ...] = ()  # reclaimed more than ``max_reclaims`` times: given up


@dataclass(frozen=True)
class TenantState:
    """One tenant's state on one queue."""

    queue: str
    tenant: str
    weight: int
    waiting: int
    running: int  # leased slots: released to Celery or running
    vruntime: float


@dataclass(frozen=True)
class WaitHistogram:
    """Queue-wait observations of one tenant: per-bucket counts (last is +Inf) and their sum."""

    buckets: tuple[int, ...]
    total: float

    @property
    def count(self) -> int:
        """Number of observations."""
        return sum(self.buckets)


class TenantQueue(Protocol):
    """The scheduler's state machine for every Celery queue."""

    settings: SchedulingSettings

    def enqueue_or_acquire(self, queue: str, item: NewItem) -> Submitted:
        """Store ``item``; release it (and anything else now runnable) if the rules allow."""
        ...

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
        """Free the lease, charge ``work`` (seconds, unless a cost was declared), release next."""
        ...

    def start(
        self, queue: str, task_id: str, token: str, *, body: str | None = None, retries: int = 0
    ) -> Started:
        """Gate at the start of a message: run it, or drop a stale copy.

        ``retries`` is the message's retry count and ``body`` (for retried messages) what the
        scheduler needs to send it again if it has to wait.
        """
        ...

    def renew(self, queue: str, leases: Sequence[tuple[str, str]]) -> list[str]:
        """Extend running leases ``(task_id, token)``; returns the ids whose lease was lost."""
        ...

    def reclaim(self, queue: str) -> Reclaimed:
        """Requeue items of expired leases (and lost retries), then release what may run."""
        ...

    def abandon(self, queue: str, task_id: str, token: str) -> bool:
        """Undo a release whose message could not be sent (the item waits again)."""
        ...

    def others_waiting(self, queue: str, tenant: str) -> bool:
        """True when a tenant other than ``tenant`` has work that could run on ``queue``."""
        ...

    def snapshot(self, queue: str) -> list[TenantState]:
        """Every active tenant's state on ``queue``."""
        ...

    def wait_histograms(self, queue: str) -> dict[str, WaitHistogram]:
        """Queue-wait histogram per tenant (cumulative since the queue was first used)."""
        ...

    def stats(self, queue: str) -> dict[str, int]:
        """Event counters (submitted, released, success, failure, retry, reclaimed, ...)."""
        ...

    def queues(self) -> list[str]:
        """Every queue the scheduler has seen."""
        ...


class RedisTenantQueue:
    """``TenantQueue`` on Redis: each method is one Lua script (one hash tag per queue)."""

    def __init__(self, client: redis.Redis, settings: SchedulingSettings) -> None:
        self.redis = client
        self.settings = settings
        self._queues_key = f"{settings.key_prefix}:queues"
        self._known: set[str] = set()
        register = client.register_script
        source = lua.scripts(settings)
        self._submit = register(source.submit)
        self._finish = register(source.finish)
        self._start = register(source.start)
        self._renew = register(source.renew)
        self._reclaim = register(source.reclaim)
        self._abandon = register(source.abandon)
        self._others = register(source.others_waiting)
        self._snapshot = register(source.snapshot)

    def base(self, queue: str) -> str:
        """Key prefix of ``queue`` (with its hash tag)."""
        return f"{self.settings.key_prefix}:{{{queue}}}:"

    def _run(self, script: Any, queue: str, *args: Any) -> Any:
        keys = [self.base(queue) + "leases"]
        with _reachable():
            return script(keys=keys, args=[self.settings.window_for(queue), *args])

    def _releases(self, queue: str, raw: Any) -> tuple[Release, ...]:
        return tuple(
            Release(
                queue=queue,
                task_id=_s(r[0]),
                token=_s(r[1]),
                tenant=_s(r[2]),
                task_type=_s(r[3]),
                body=_s(r[4]),
                submitted_at=int(_s(r[5])) / 1000,
            )
            for r in raw
        )

    def enqueue_or_acquire(self, queue: str, item: NewItem) -> Submitted:
        """As ``TenantQueue.enqueue_or_acquire``."""
        check_item(queue, item)
        if queue not in self._known:
            # Outside the script: the registry key has no hash tag (tick scans it).
            with _reachable():
                self.redis.sadd(self._queues_key, queue)
            self._known.add(queue)
        cost = "" if item.cost is None else repr(max(float(item.cost), MIN_CHARGE))
        status, raw = self._run(
            self._submit,
            queue,
            item.task_id,
            item.tenant,
            item.task_type,
            cost,
            item.body,
            item.limit,
            item.weight,
        )
        state = _s(status)
        return Submitted(
            task_id=item.task_id,
            acquired=state == "acquired",
            duplicate=state == "duplicate",
            released=self._releases(queue, raw),
        )

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
        measured = "" if work is None else repr(max(float(work), 0.0))
        status, raw = self._run(
            self._finish,
            queue,
            task_id,
            token,
            str(outcome),
            measured,
            int(max(retry_in, 0.0) * 1000),
        )
        return Finished(_s(status) == "released", self._releases(queue, raw))

    def start(
        self, queue: str, task_id: str, token: str, *, body: str | None = None, retries: int = 0
    ) -> Started:
        """As ``TenantQueue.start``."""
        status, new_token, waited, raw = self._run(
            self._start, queue, task_id, token, body or "", retries
        )
        text = _s(waited)
        return Started(
            StartStatus(_s(status)),
            _s(new_token),
            float(text) if text else None,
            self._releases(queue, raw),
        )

    def renew(self, queue: str, leases: Sequence[tuple[str, str]]) -> list[str]:
        """As ``TenantQueue.renew``."""
        if not leases:
            return []
        flat = [part for pair in leases for part in pair]
        return [_s(x) for x in self._run(self._renew, queue, *flat)]

    def reclaim(self, queue: str) -> Reclaimed:
        """As ``TenantQueue.reclaim``."""
        ids, raw, lost = self._run(self._reclaim, queue)
        return Reclaimed(
            tuple(_s(i) for i in ids), self._releases(queue, raw), tuple(_s(i) for i in lost)
        )

    def abandon(self, queue: str, task_id: str, token: str) -> bool:
        """As ``TenantQueue.abandon``."""
        return bool(self._run(self._abandon, queue, task_id, token))

    def others_waiting(self, queue: str, tenant: str) -> bool:
        """As ``TenantQueue.others_waiting``."""
        return bool(self._run(self._others, queue, tenant))

    def snapshot(self, queue: str) -> list[TenantState]:
        """As ``TenantQueue.snapshot``."""
        return [
            TenantState(
                queue=queue,
                tenant=_s(t),
                weight=int(_s(w)),
                waiting=int(waiting),
                running=int(running),
                vruntime=float(_s(v)),
            )
            for t, waiting, running, v, w in self._run(self._snapshot, queue)
        ]

    def wait_histograms(self, queue: str) -> dict[str, WaitHistogram]:
        """As ``TenantQueue.wait_histograms``."""
        raw = self.redis.hgetall(self.base(queue) + "hist")
        return histograms_from_fields(
            {_s(k): _s(v) for k, v in raw.items()}, len(self.settings.wait_buckets)
        )

    def stats(self, queue: str) -> dict[str, int]:
        """As ``TenantQueue.stats``."""
        raw = self.redis.hgetall(self.base(queue) + "stats")
        return {_s(k): int(_s(v)) for k, v in raw.items()}

    def queues(self) -> list[str]:
        """As ``TenantQueue.queues``."""
        return sorted(_s(q) for q in self.redis.smembers(self._queues_key))


def histograms_from_fields(fields: dict[str, str], bounds: int) -> dict[str, WaitHistogram]:
    """Parse ``tenant|<bucket index 1..bounds+1>`` and ``tenant|sum`` fields."""
    counts: dict[str, list[int]] = {}
    sums: dict[str, float] = {}
    for key, value in fields.items():
        tenant, _, part = key.rpartition("|")
        if part == "sum":
            sums[tenant] = float(value)
            continue
        index = int(part) - 1
        if 0 <= index <= bounds:
            counts.setdefault(tenant, [0] * (bounds + 1))[index] = int(value)
    return {
        t: WaitHistogram(tuple(c), sums.get(t, 0.0))
        for t, c in counts.items()  # every observation writes a bucket and the sum together
    }


@contextmanager
def _reachable() -> Iterator[None]:
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        # redis-py already retried with backoff; the API answers 503 for this.
        raise InfrastructureError("the scheduler's Redis is unreachable") from exc


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
