"""A hypothesis state machine driving a ``TenantQueue`` with random producers and workers.

It keeps a model of every item (waiting, released, running, retry pending, done) and checks after
every step: no item is released twice, none is lost, a (tenant, task type) pair never holds more
than N slots, the queue never has more than its window in flight, and the window is never left
idle while runnable work waits (work conservation). ``ReferencePair`` (integration) runs Redis
and the in-memory queue in lockstep and also requires identical answers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from relay.scheduling.settings import SchedulingSettings
from relay.scheduling.tenant_queue import (
    NewItem,
    Outcome,
    Release,
    StartStatus,
    TenantQueue,
)

Q = "model"
TENANTS = ("a", "b", "c")
KINDS = ("index", "mail")
MODEL_SETTINGS = SchedulingSettings(
    window=5, lease_ttl=30, dispatch_ttl=60, default_cost=0.5, max_reclaims=2
)


def limit_of(tenant: str, kind: str) -> int:
    return 1 + (TENANTS.index(tenant) + KINDS.index(kind)) % 3


@dataclass
class Entry:
    tenant: str
    kind: str
    state: str = "w"  # w l r y d
    token: str = ""
    reclaims: int = 0
    retries: int = 0


class QueueMachine(RuleBasedStateMachine):
    """Subclasses set ``make`` -> (queue, advance or None when time cannot be faked)."""

    make: Callable[[], tuple[TenantQueue, Callable[[float], None] | None]]

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[str, Entry] = {}
        self.serial = 0

    @initialize()
    def build(self) -> None:
        self.tq, self.advance = type(self).make()

    # --- bookkeeping -----------------------------------------------------------------------

    def take(self, releases: tuple[Release, ...]) -> None:
        for release in releases:
            entry = self.entries[release.task_id]
            assert entry.state == "w", f"{release.task_id} released twice"
            assert (release.tenant, release.task_type) == (entry.tenant, entry.kind)
            entry.state, entry.token = "l", release.token

    def ids(self, *states: str) -> list[str]:
        return sorted(i for i, e in self.entries.items() if e.state in states)

    # --- producers and workers -------------------------------------------------------------

    @rule(
        tenant=st.sampled_from(TENANTS),
        kind=st.sampled_from(KINDS),
        cost=st.one_of(st.none(), st.sampled_from([0.1, 1.0, 3.0])),
    )
    def submit(self, tenant: str, kind: str, cost: float | None) -> None:
        self.serial += 1
        task_id = f"i{self.serial}"
        self.entries[task_id] = Entry(tenant, kind)
        weight = {"a": 1, "b": 4, "c": 16}[tenant]
        new = NewItem(task_id, tenant, kind, "{}", limit_of(tenant, kind), weight, cost)
        result = self.tq.enqueue_or_acquire(Q, new)
        assert not result.duplicate
        self.take(result.released)
        assert result.acquired == (self.entries[task_id].state == "l")

    @precondition(lambda self: self.ids("l"))
    @rule(data=st.data())
    def start(self, data: st.DataObject) -> None:
        task_id = data.draw(st.sampled_from(self.ids("l")))
        entry = self.entries[task_id]
        started = self.tq.start(Q, task_id, entry.token, retries=entry.retries)
        assert started.status == StartStatus.RUN
        assert started.released == ()
        entry.state = "r"

    @precondition(lambda self: self.ids("w", "l", "r", "d"))
    @rule(data=st.data())
    def start_stale_copy(self, data: st.DataObject) -> None:
        task_id = data.draw(st.sampled_from(self.ids("w", "l", "r", "d")))
        started = self.tq.start(Q, task_id, "stale")
        assert started.status == StartStatus.DUPLICATE

    @precondition(lambda self: self.ids("l", "r"))
    @rule(
        data=st.data(),
        outcome=st.sampled_from(list(Outcome)),
        work=st.one_of(st.none(), st.floats(min_value=0.0, max_value=5.0)),
    )
    def finish(self, data: st.DataObject, outcome: Outcome, work: float | None) -> None:
        task_id = data.draw(st.sampled_from(self.ids("l", "r")))
        entry = self.entries[task_id]
        result = self.tq.release_and_pull_next(Q, task_id, entry.token, outcome=outcome, work=work)
        assert result.released_slot
        entry.state, entry.token = ("y" if outcome == Outcome.RETRY else "d"), ""
        self.take(result.released)

    @precondition(lambda self: self.ids("d"))
    @rule(data=st.data())
    def late_finish_of_a_done_item(self, data: st.DataObject) -> None:
        task_id = data.draw(st.sampled_from(self.ids("d")))
        result = self.tq.release_and_pull_next(Q, task_id, "1", outcome=Outcome.SUCCESS, work=1)
        assert not result.released_slot
        self.take(result.released)

    @precondition(lambda self: self.ids("y"))
    @rule(data=st.data())
    def retried_message_arrives(self, data: st.DataObject) -> None:
        task_id = data.draw(st.sampled_from(self.ids("y")))
        entry = self.entries[task_id]
        entry.state = "w"
        entry.retries += 1
        started = self.tq.start(Q, task_id, "old-token", body="{}", retries=entry.retries)
        self.take(started.released)
        if started.status == StartStatus.RUN:
            entry.state, entry.token = "r", started.token
        else:
            assert started.status == StartStatus.REQUEUED

    @precondition(lambda self: self.ids("r"))
    @rule(data=st.data())
    def retried_message_overtakes_the_end_of_its_attempt(self, data: st.DataObject) -> None:
        task_id = data.draw(st.sampled_from(self.ids("r")))
        entry = self.entries[task_id]
        started = self.tq.start(Q, task_id, entry.token, body="{}", retries=entry.retries + 1)
        assert started.status == StartStatus.REQUEUED
        result = self.tq.release_and_pull_next(
            Q, task_id, entry.token, outcome=Outcome.RETRY, work=1.0
        )
        assert result.released_slot
        entry.state, entry.token, entry.retries = "w", "", entry.retries + 1
        self.take(result.released)

    @precondition(lambda self: self.ids("r"))
    @rule()
    def heartbeat(self) -> None:
        pairs = [(i, self.entries[i].token) for i in self.ids("r")]
        assert self.tq.renew(Q, pairs) == []

    @precondition(lambda self: self.advance is not None)
    @rule()
    def every_worker_dies(self) -> None:
        assert self.advance is not None
        self.advance(MODEL_SETTINGS.dispatch_ttl + 1)
        expected, lost = set(self.ids("y")), set()
        for task_id in self.ids("l", "r"):
            self.entries[task_id].reclaims += 1
            if self.entries[task_id].reclaims > MODEL_SETTINGS.max_reclaims:
                lost.add(task_id)
            else:
                expected.add(task_id)
        result = self.tq.reclaim(Q)
        assert (set(result.reclaimed), set(result.lost)) == (expected, lost)
        for task_id in expected:
            self.entries[task_id].state, self.entries[task_id].token = "w", ""
        for task_id in lost:
            self.entries[task_id].state, self.entries[task_id].token = "d", ""
        self.take(result.released)

    # --- invariants ------------------------------------------------------------------------

    @invariant()
    def never_more_than_n_per_pair_nor_more_than_the_window(self) -> None:
        if not hasattr(self, "tq"):
            return
        held = Counter((e.tenant, e.kind) for e in self.entries.values() if e.state in "lr")
        for (tenant, kind), count in held.items():
            assert count <= limit_of(tenant, kind)
        assert sum(held.values()) <= MODEL_SETTINGS.window

    @invariant()
    def nothing_is_lost_and_the_window_is_kept_busy(self) -> None:
        if not hasattr(self, "tq"):
            return
        states = {s.tenant: s for s in self.tq.snapshot(Q)}
        for tenant in TENANTS:
            mine = [e for e in self.entries.values() if e.tenant == tenant]
            waiting = sum(e.state == "w" for e in mine)
            running = sum(e.state in "lr" for e in mine)
            if not any(e.state != "d" for e in mine):
                assert tenant not in states
                continue
            assert (states[tenant].waiting, states[tenant].running) == (waiting, running)
        in_flight = sum(e.state in "lr" for e in self.entries.values())
        if in_flight < MODEL_SETTINGS.window:
            for tenant in TENANTS:
                for kind in KINDS:
                    pair = [
                        e for e in self.entries.values() if (e.tenant, e.kind) == (tenant, kind)
                    ]
                    if any(e.state == "w" for e in pair):
                        held = sum(e.state in "lr" for e in pair)
                        assert held >= limit_of(tenant, kind), "runnable work left waiting"
