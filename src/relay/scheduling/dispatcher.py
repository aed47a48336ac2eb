"""``FairDispatcher``: the enqueue API producers call, and the hooks the task runtime calls.

Producers ``submit()`` instead of ``send_task()``. The item waits in its tenant's list and is sent
to Celery only while its queue's in-flight window has room, in fair-share order and within the
tenant's concurrency. There is no dispatcher daemon: releasing happens inside ``submit``, inside
``task_finished`` (a finishing task hands its window slot on) and inside ``tick`` (beat, and
opportunistically from workers), so any surviving process keeps the queues moving.

Messages carry the header ``relay_fair`` (queue, task id, tenant, task type, lease token). At the
start of a message the worker calls ``begin``: only the copy holding the current lease runs; a
redelivered or superseded copy is dropped (``celery.exceptions.Ignore``), so at-least-once delivery
never runs one release twice and never runs more than N tasks of a pair.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from relay.adapters.publisher import TaskPublisher
from relay.adapters.tracing import extract, inject, span
from relay.background import Background
from relay.catalog import task_spec
from relay.config import Plan, TenancySettings
from relay.scheduling.leases import HeldLease, LeaseRenewer
from relay.scheduling.settings import SchedulingSettings
from relay.scheduling.tenant_queue import (
    NewItem,
    Outcome,
    Release,
    StartStatus,
    TenantQueue,
)

log = logging.getLogger(__name__)

HEADER = "relay_fair"
TENANT_HEADER = "tenant_id"  # the header RelayTask.tenant_id reads


@dataclass(frozen=True)
class FairTicket:
    """What a released message carries: enough to find its lease again."""

    queue: str
    task_id: str
    tenant: str
    task_type: str
    token: str

    def header(self) -> dict[str, str]:
        """The ``relay_fair`` header value."""
        return {
            "q": self.queue,
            "id": self.task_id,
            "t": self.tenant,
            "k": self.task_type,
            "tok": self.token,
        }

    @classmethod
    def from_header(cls, value: Any) -> FairTicket | None:
        """Parse a ``relay_fair`` header value (None when absent or malformed)."""
        if not isinstance(value, Mapping):
            return None
        try:
            return cls(
                str(value["q"]),
                str(value["id"]),
                str(value["t"]),
                str(value["k"]),
                str(value["tok"]),
            )
        except KeyError:
            return None


def ticket_of(request: Any) -> FairTicket | None:
    """The ticket of a Celery request (custom headers are both a dict and attributes)."""
    headers = getattr(request, "headers", None)
    value = headers.get(HEADER) if isinstance(headers, Mapping) else None
    return FairTicket.from_header(value if value is not None else getattr(request, HEADER, None))


@dataclass(frozen=True)
class TickReport:
    """What one safety tick did."""

    reclaimed: int
    released: int
    lost: tuple[str, ...] = ()  # task ids given up after killing their worker too often


class RunSlot:
    """The slot a starting message asked for: ``run`` says whether this copy may run."""

    def __init__(
        self,
        dispatcher: FairDispatcher,
        ticket: FairTicket | None,
        status: StartStatus,
        waited: float | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.ticket = ticket
        self.status = status
        self.waited = waited
        self._finished = False

    @property
    def run(self) -> bool:
        """True: run the task. False: drop this message (``Ignore``), it is not the live copy."""
        return self.status in (StartStatus.RUN, StartStatus.UNKNOWN)

    def finish(
        self,
        seconds: float | None,
        outcome: Outcome = Outcome.SUCCESS,
        *,
        cost: float | None = None,
        retry_in: float = 0.0,
    ) -> None:
        """Report the end of the run (once): frees the slot and releases the next items."""
        if self._finished or self.ticket is None or self.status != StartStatus.RUN:
            return
        self._finished = True
        self.dispatcher.task_finished(
            self.ticket, seconds, outcome=outcome, cost=cost, retry_in=retry_in
        )


class FairDispatcher:
    """Releases tenants' tasks into Celery in fair order; see the module docstring."""

    def __init__(
        self,
        queue: TenantQueue,
        publisher: TaskPublisher,
        settings: SchedulingSettings,
        tenancy: TenancySettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        background: Background | None = None,
    ) -> None:
        self.queue = queue
        self.publisher = publisher
        self.settings = settings
        self.tenancy = tenancy
        self.clock = clock
        self.renewer = LeaseRenewer(queue, settings.lease_ttl / 3, background=background)
        self._active: dict[str, FairTicket] = {}
        self._lock = threading.Lock()
        self._last_tick = clock()

    # --- producers -----------------------------------------------------------------------------

    def submit(
        self,
        tenant_id: str,
        plan: Plan | str,
        task_name: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        queue: str | None = None,
        cost: float | None = None,
        headers: Mapping[str, Any] | None = None,
        *,
        task_id: str | None = None,
        task_type: str | None = None,
    ) -> str:
        """Schedule a task for ``tenant_id``; returns its Celery task id.

        ``queue`` defaults to the task's catalogue route; ``cost`` declares the work charged to
        the tenant instead of the measured run time; ``task_type`` (default: the task name) is the
        unit of the per-tenant concurrency limit. Submitting a known ``task_id`` again changes
        nothing, so a producer may retry (or an outbox republish) safely.
        """
        plan = Plan(plan)
        if queue is None:
            queue = task_spec(task_name).queue
        task_id = task_id or str(uuid.uuid4())
        attributes = {"relay.task": task_name, "relay.task_id": task_id, "relay.queue": queue}
        with span("fair.submit", attributes, kind="producer"):
            # The item keeps its producer's trace context while it waits: whoever releases it
            # later (another tenant's completion, a tick) does not become its parent.
            stored = dict(headers or {})
            inject(stored)
            item = NewItem(
                task_id=task_id,
                tenant=tenant_id,
                task_type=task_type or task_name,
                body=encode_body(task_name, args, kwargs, stored, retries=0),
                limit=self.tenancy.concurrency.get(plan, 1),
                weight=self.tenancy.weights.get(plan, 1),
                cost=cost,
            )
            submitted = self.queue.enqueue_or_acquire(queue, item)
        self._send_all(submitted.released)
        return task_id

    # --- task runtime --------------------------------------------------------------------------

    def begin(self, request: Any) -> RunSlot | None:
        """Call at the start of a task: None for messages the scheduler did not release."""
        ticket = ticket_of(request)
        if ticket is None:
            return None
        body = None
        if int(getattr(request, "retries", 0) or 0) > 0:
            # A retried message may have to wait again: keep what it needs to be re-sent.
            headers = dict(getattr(request, "headers", None) or {})
            headers.pop(HEADER, None)
            body = encode_body(
                str(request.task),
                request.args or (),
                request.kwargs or {},
                headers,
                retries=int(request.retries),
            )
        retries = int(getattr(request, "retries", 0) or 0)
        started = self.queue.start(
            ticket.queue, ticket.task_id, ticket.token, body=body, retries=retries
        )
        self._send_all(started.released)
        if started.status == StartStatus.UNKNOWN:
            log.warning(
                "message unknown to the scheduler runs unscheduled",
                extra={"action": "scheduling.unknown", "task_id": ticket.task_id},
            )
            return RunSlot(self, None, started.status)
        if started.status != StartStatus.RUN:
            log.info(
                "stale copy dropped",
                extra={
                    "action": f"scheduling.{started.status}",
                    "task_id": ticket.task_id,
                    "tenant": ticket.tenant,
                },
            )
            return RunSlot(self, ticket, started.status)
        live = replace(ticket, token=started.token)
        with self._lock:
            self._active[live.task_id] = live
        self.renewer.hold(HeldLease(live.queue, live.task_id, live.token))
        return RunSlot(self, live, started.status, started.waited)

    def task_finished(
        self,
        ticket: FairTicket | Mapping[str, Any],
        seconds: float | None = None,
        *,
        outcome: Outcome = Outcome.SUCCESS,
        cost: float | None = None,
        retry_in: float = 0.0,
    ) -> bool:
        """A released task ended (success, failure or retry): charge it, free its slot, refill.

        ``ticket`` is the ``FairTicket`` or the message headers; ``seconds`` its run time (the
        work charged unless ``cost`` is given or was declared at submit). Returns False when the
        slot was not held any more (it was reclaimed, or this was a stale copy).
        """
        if not isinstance(ticket, FairTicket):
            parsed = FairTicket.from_header(ticket.get(HEADER, ticket))
            if parsed is None:
                return False
            ticket = parsed
        with self._lock:
            # begin() may have swapped the token (a retry that ran at once).
            ticket = self._active.pop(ticket.task_id, ticket)
        self.renewer.drop(ticket.task_id)
        finished = self.queue.release_and_pull_next(
            ticket.queue,
            ticket.task_id,
            ticket.token,
            outcome=Outcome(outcome),
            work=cost if cost is not None else seconds,
            retry_in=retry_in,
        )
        self._send_all(finished.released)
        if self.clock() - self._last_tick >= self.settings.tick_interval:
            self.tick()
        return finished.released_slot

    # --- safety --------------------------------------------------------------------------------

    def tick(self) -> TickReport:
        """Reclaim expired leases and refill every queue's window (beat runs this)."""
        self._last_tick = self.clock()
        reclaimed = released = 0
        lost: list[str] = []
        for queue in self.queue.queues():
            result = self.queue.reclaim(queue)
            if result.lost:
                log.error(
                    "tasks given up: their slot was reclaimed too often",
                    extra={
                        "action": "scheduling.lost",
                        "queue": queue,
                        "task_ids": list(result.lost),
                    },
                )
                lost.extend(result.lost)
            if result.reclaimed:
                log.warning(
                    "expired slots reclaimed",
                    extra={
                        "action": "scheduling.reclaimed",
                        "queue": queue,
                        "task_ids": list(result.reclaimed),
                    },
                )
            reclaimed += len(result.reclaimed)
            released += len(result.released)
            self._send_all(result.released)
        return TickReport(reclaimed, released, tuple(lost))

    def close(self) -> None:
        """Stop the lease heartbeat."""
        self.renewer.stop()

    # --- sending -------------------------------------------------------------------------------

    def _send_all(self, releases: Sequence[Release]) -> None:
        for release in releases:
            self._send(release)

    def _send(self, release: Release) -> None:
        body = json.loads(release.body)
        ticket = FairTicket(
            release.queue, release.task_id, release.tenant, release.task_type, release.token
        )
        headers = dict(body.get("headers") or {})
        headers.setdefault(TENANT_HEADER, release.tenant)
        headers[HEADER] = ticket.header()
        attributes = {"relay.task": body["task"], "relay.task_id": release.task_id}
        try:
            # A child of the stored producer context, linked to the span that released it.
            with span(
                "fair.release",
                attributes,
                kind="producer",
                parent=extract(headers),
                link_current=True,
            ):
                inject(headers)
                self.publisher.send_task(
                    body["task"],
                    args=body["args"],
                    kwargs=body["kwargs"],
                    task_id=release.task_id,
                    queue=release.queue,
                    headers=headers,
                    retries=body.get("retries", 0),
                )
        except Exception:
            # The broker refused it: the item waits again at the head of its list and the next
            # finish or tick releases it.
            log.exception(
                "release could not be sent",
                extra={"action": "scheduling.send_failed", "task_id": release.task_id},
            )
            self.queue.abandon(release.queue, release.task_id, release.token)


def encode_body(
    task_name: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any] | None,
    headers: Mapping[str, Any] | None,
    *,
    retries: int,
) -> str:
    """The stored message of an item (JSON, as Celery would serialise it)."""
    return json.dumps(
        {
            "task": task_name,
            "args": list(args),
            "kwargs": dict(kwargs or {}),
            "headers": dict(headers or {}),
            "retries": retries,
        },
        separators=(",", ":"),
    )
