"""The ``TenantQueue`` contract, run against the in-memory queue (unit) and Redis (integration).

A subclass provides the ``harness`` fixture: a queue built from ``SETTINGS`` and ``advance(s)``,
which lets ``s`` seconds of the queue's clock pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from relay.scheduling.settings import SchedulingSettings
from relay.scheduling.tenant_queue import (
    NewItem,
    Outcome,
    Release,
    StartStatus,
    TenantQueue,
)

SETTINGS = SchedulingSettings(window=4, lease_ttl=0.3, dispatch_ttl=0.6, default_cost=1.0)
Q = "work"


@dataclass
class Harness:
    tq: TenantQueue
    advance: Callable[[float], None]


def item(
    task_id: str,
    tenant: str = "a",
    *,
    limit: int = 2,
    weight: int = 1,
    kind: str = "t",
    cost: float | None = None,
) -> NewItem:
    return NewItem(task_id, tenant, kind, f'{{"id": "{task_id}"}}', limit, weight, cost)


def ids(releases: tuple[Release, ...]) -> list[str]:
    return [r.task_id for r in releases]


class TenantQueueContract:
    """Behaviour every ``TenantQueue`` must show."""

    @pytest.fixture
    def harness(self) -> Harness:  # pragma: no cover - overridden
        raise NotImplementedError

    def submit(self, h: Harness, new: NewItem) -> tuple[Release, ...]:
        return h.tq.enqueue_or_acquire(Q, new).released

    def finish(
        self, h: Harness, r: Release, work: float | None = 1.0, **kw: object
    ) -> tuple[Release, ...]:
        outcome = kw.pop("outcome", Outcome.SUCCESS)
        result = h.tq.release_and_pull_next(Q, r.task_id, r.token, outcome=outcome, work=work, **kw)  # type: ignore[arg-type]
        return result.released

    def test_runs_now_while_a_slot_is_free_then_waits_in_order(self, harness: Harness) -> None:
        first = harness.tq.enqueue_or_acquire(Q, item("a1"))
        assert first.acquired
        assert ids(first.released) == ["a1"]
        assert harness.tq.enqueue_or_acquire(Q, item("a2")).acquired
        third = harness.tq.enqueue_or_acquire(Q, item("a3"))
        assert not third.acquired
        assert third.released == ()
        self.submit(harness, item("a4"))
        [state] = harness.tq.snapshot(Q)
        assert (state.tenant, state.waiting, state.running) == ("a", 2, 2)
        released = self.finish(harness, first.released[0])
        assert ids(released) == ["a3"], "the slot goes to the pair's oldest waiting item"
        assert released[0].body == '{"id": "a3"}'

    def test_pairs_of_one_tenant_have_separate_limits(self, harness: Harness) -> None:
        assert ids(self.submit(harness, item("x1", kind="index", limit=1))) == ["x1"]
        assert ids(self.submit(harness, item("x2", kind="index", limit=1))) == []
        assert ids(self.submit(harness, item("y1", kind="mail", limit=1))) == ["y1"]

    def test_window_caps_what_is_in_flight_per_queue(self, harness: Harness) -> None:
        released = []
        for n in range(6):
            released += self.submit(harness, item(f"t{n}", f"ten{n}", limit=5))
        assert len(released) == SETTINGS.window
        assert sum(s.running for s in harness.tq.snapshot(Q)) == SETTINGS.window
        assert len(self.finish(harness, released[0])) == 1

    def test_a_newcomer_is_released_before_the_backlog_of_a_noisy_tenant(
        self, harness: Harness
    ) -> None:
        in_flight = []
        for n in range(20):
            in_flight += self.submit(harness, item(f"a{n}", "noisy", limit=8))
        assert self.submit(harness, item("b0", "quiet")) == ()
        assert ids(self.finish(harness, in_flight[0])) == ["b0"]

    def test_an_overcharged_incumbent_does_not_make_a_newcomer_wait(self, harness: Harness) -> None:
        # Releases are charged an estimate (1 s by default here) that the finish corrects to the
        # measured 1 ms; the newcomer must start at the corrected minimum, not the old one.
        in_flight = []
        for n in range(30):
            in_flight += self.submit(harness, item(f"a{n}", "noisy", limit=8))
        for _ in range(8):
            in_flight += self.finish(harness, in_flight.pop(0), work=0.001)
        assert self.submit(harness, item("b0", "quiet")) == ()
        assert ids(self.finish(harness, in_flight.pop(0), work=0.001)) == ["b0"]

    def test_weights_decide_the_order_of_releases(self, harness: Harness) -> None:
        in_flight = []
        for n in range(40):
            in_flight += self.submit(harness, item(f"s{n}", "small", limit=8, weight=1, cost=1))
            in_flight += self.submit(harness, item(f"b{n}", "big", limit=8, weight=3, cost=1))
        order = []
        for _ in range(24):
            done = in_flight.pop(0)
            released = self.finish(harness, done, work=None)
            order += [r.tenant for r in released]
            in_flight += released
        assert order.count("big") == pytest.approx(3 * order.count("small"), abs=2)

    def test_start_gate_runs_the_live_copy_once(self, harness: Harness) -> None:
        [r] = self.submit(harness, item("a1"))
        wrong = harness.tq.start(Q, "a1", "not-the-token")
        assert wrong.status == StartStatus.DUPLICATE
        started = harness.tq.start(Q, "a1", r.token)
        assert (started.status, started.token) == (StartStatus.RUN, r.token)
        assert started.waited is not None
        assert started.waited >= 0
        assert harness.tq.start(Q, "a1", r.token).status == StartStatus.DUPLICATE
        self.finish(harness, r)
        assert harness.tq.start(Q, "a1", r.token).status == StartStatus.DUPLICATE
        assert harness.tq.start(Q, "never-seen", "1").status == StartStatus.UNKNOWN
        assert harness.tq.wait_histograms(Q)["a"].count == 1

    def test_a_stale_finish_frees_nothing(self, harness: Harness) -> None:
        [r1] = self.submit(harness, item("a1", limit=1))
        self.submit(harness, item("a2", limit=1))
        stale = harness.tq.release_and_pull_next(
            Q, "a1", "bogus", outcome=Outcome.SUCCESS, work=1.0
        )
        assert not stale.released_slot
        assert stale.released == ()
        assert harness.tq.snapshot(Q)[0].running == 1
        done = harness.tq.release_and_pull_next(Q, "a1", r1.token, outcome=Outcome.SUCCESS, work=1)
        assert done.released_slot
        assert ids(done.released) == ["a2"]
        again = harness.tq.release_and_pull_next(Q, "a1", r1.token, outcome=Outcome.SUCCESS, work=1)
        assert not again.released_slot

    def test_submitting_a_known_id_again_changes_nothing(self, harness: Harness) -> None:
        [r] = self.submit(harness, item("a1"))
        assert harness.tq.enqueue_or_acquire(Q, item("a1")).duplicate
        self.finish(harness, r)
        assert harness.tq.enqueue_or_acquire(Q, item("a1")).duplicate, "done ids are remembered"
        assert harness.tq.snapshot(Q) == []

    def test_an_expired_lease_is_reclaimed_and_its_item_released_again(
        self, harness: Harness
    ) -> None:
        [r1] = self.submit(harness, item("a1", limit=1))
        self.submit(harness, item("a2", limit=1))
        assert harness.tq.start(Q, "a1", r1.token).status == StartStatus.RUN
        assert harness.tq.reclaim(Q).reclaimed == ()
        harness.advance(SETTINGS.lease_ttl + 0.1)
        reclaimed = harness.tq.reclaim(Q)
        assert reclaimed.reclaimed == ("a1",)
        [again] = reclaimed.released
        assert again.task_id == "a1", "back at the head of its list"
        assert again.token != r1.token
        # The dead worker's copy can neither run nor free the new holder's slot.
        assert harness.tq.start(Q, "a1", r1.token).status == StartStatus.DUPLICATE
        assert not harness.tq.release_and_pull_next(
            Q, "a1", r1.token, outcome=Outcome.SUCCESS, work=1
        ).released_slot
        assert ids(self.finish(harness, again)) == ["a2"]

    def test_a_task_that_keeps_killing_its_worker_is_given_up(self, harness: Harness) -> None:
        [release] = self.submit(harness, item("a1", limit=1))
        self.submit(harness, item("a2", limit=1))
        for _ in range(SETTINGS.max_reclaims):
            harness.tq.start(Q, "a1", release.token)
            harness.advance(SETTINGS.lease_ttl + 0.05)
            result = harness.tq.reclaim(Q)
            assert result.reclaimed == ("a1",)
            [release] = result.released
        harness.tq.start(Q, "a1", release.token)
        harness.advance(SETTINGS.lease_ttl + 0.05)
        result = harness.tq.reclaim(Q)
        assert (result.reclaimed, result.lost) == ((), ("a1",))
        assert ids(result.released) == ["a2"], "the slot goes on to the next item"
        assert harness.tq.start(Q, "a1", release.token).status == StartStatus.DUPLICATE
        assert harness.tq.stats(Q)["lost"] == 1

    def test_renewal_keeps_a_running_lease(self, harness: Harness) -> None:
        [r] = self.submit(harness, item("a1"))
        harness.tq.start(Q, "a1", r.token)
        for _ in range(3):
            harness.advance(SETTINGS.lease_ttl / 2)
            assert harness.tq.renew(Q, [("a1", r.token)]) == []
        assert harness.tq.reclaim(Q).reclaimed == ()
        assert harness.tq.renew(Q, [("a1", "other-token")]) == ["a1"]

    def test_a_released_but_unstarted_item_gets_the_longer_dispatch_ttl(
        self, harness: Harness
    ) -> None:
        self.submit(harness, item("a1"))
        harness.advance(SETTINGS.lease_ttl + 0.05)
        assert harness.tq.reclaim(Q).reclaimed == ()
        harness.advance(SETTINGS.dispatch_ttl)
        assert harness.tq.reclaim(Q).reclaimed == ("a1",)

    def test_retry_frees_the_slot_and_the_retried_message_goes_through_the_fair_order(
        self, harness: Harness
    ) -> None:
        [r1] = self.submit(harness, item("a1", limit=1))
        harness.tq.start(Q, "a1", r1.token)
        self.submit(harness, item("a2", limit=1))
        released = self.finish(harness, r1, outcome=Outcome.RETRY, retry_in=0.0)
        assert ids(released) == ["a2"], "the retry does not hold the slot during its backoff"
        # The retried message arrives while a2 holds the only slot: it waits again.
        retried = harness.tq.start(Q, "a1", r1.token, body='{"retried": 1}')
        assert retried.status == StartStatus.REQUEUED
        [again] = self.finish(harness, released[0])
        assert (again.task_id, again.body) == ("a1", '{"retried": 1}')

    def test_a_retried_message_that_overtakes_its_attempts_end_is_not_lost(
        self, harness: Harness
    ) -> None:
        # Celery publishes the retried message inside ``self.retry()``, before the attempt
        # reports its end: another worker may start it while the attempt still holds the slot.
        [r1] = self.submit(harness, item("a1", limit=1))
        harness.tq.start(Q, "a1", r1.token)
        early = harness.tq.start(Q, "a1", r1.token, body='{"retry": 1}', retries=1)
        assert early.status == StartStatus.REQUEUED
        redelivered = harness.tq.start(Q, "a1", r1.token, body='{"retry": 0}', retries=0)
        assert redelivered.status == StartStatus.DUPLICATE, "same attempt: a plain duplicate"
        [again] = self.finish(harness, r1, outcome=Outcome.RETRY)
        assert (again.task_id, again.body) == ("a1", '{"retry": 1}')
        assert harness.tq.start(Q, "a1", again.token, retries=1).status == StartStatus.RUN
        self.finish(harness, again)
        assert harness.tq.snapshot(Q) == []

    def test_a_retried_message_runs_at_once_when_its_slot_is_free(self, harness: Harness) -> None:
        [r1] = self.submit(harness, item("a1", limit=1))
        harness.tq.start(Q, "a1", r1.token)
        self.finish(harness, r1, outcome=Outcome.RETRY)
        started = harness.tq.start(Q, "a1", r1.token)
        assert started.status == StartStatus.RUN
        assert started.token != r1.token
        assert harness.tq.snapshot(Q)[0].running == 1
        done = harness.tq.release_and_pull_next(
            Q, "a1", started.token, outcome=Outcome.SUCCESS, work=1
        )
        assert done.released_slot
        assert harness.tq.snapshot(Q) == []

    def test_a_lost_retry_is_released_after_the_dispatch_ttl(self, harness: Harness) -> None:
        [r1] = self.submit(harness, item("a1"))
        harness.tq.start(Q, "a1", r1.token)
        self.finish(harness, r1, outcome=Outcome.RETRY, retry_in=0.0)
        harness.advance(SETTINGS.dispatch_ttl + 0.1)
        reclaimed = harness.tq.reclaim(Q)
        assert reclaimed.reclaimed == ("a1",)
        assert ids(reclaimed.released) == ["a1"]

    def test_abandon_puts_an_unsent_release_back_at_the_head(self, harness: Harness) -> None:
        [r1] = self.submit(harness, item("a1", limit=1))
        self.submit(harness, item("a2", limit=1))
        assert harness.tq.abandon(Q, "a1", r1.token)
        assert not harness.tq.abandon(Q, "a1", r1.token)
        [again] = harness.tq.reclaim(Q).released  # any later step refills the window
        assert again.task_id == "a1"

    def test_an_idle_tenant_leaves_the_snapshot_and_keeps_its_debt(self, harness: Harness) -> None:
        [h1] = self.submit(harness, item("h1", "hog", limit=1))
        [o1] = self.submit(harness, item("o1", "other", limit=1))
        self.finish(harness, h1, work=50.0)
        assert {s.tenant for s in harness.tq.snapshot(Q)} == {"other"}
        [h2] = self.submit(harness, item("h2", "hog", limit=1))
        by_tenant = {s.tenant: s for s in harness.tq.snapshot(Q)}
        assert by_tenant["hog"].vruntime > 50, "leaving did not wipe the hog's debt"
        assert by_tenant["other"].vruntime < 2
        self.finish(harness, o1)
        self.finish(harness, h2)
        assert harness.tq.snapshot(Q) == []

    def test_others_waiting_sees_only_runnable_work_of_other_tenants(
        self, harness: Harness
    ) -> None:
        for n in range(5):
            self.submit(harness, item(f"a{n}", "a", limit=8))
        assert not harness.tq.others_waiting(Q, "a"), "only a's own work waits"
        self.submit(harness, item("b0", "b"))
        assert harness.tq.others_waiting(Q, "a")
        assert harness.tq.others_waiting(Q, "b"), "a still has runnable work waiting"

    def test_an_upgraded_plan_raises_the_limit(self, harness: Harness) -> None:
        self.submit(harness, item("a1", limit=1))
        assert self.submit(harness, item("a2", limit=1)) == ()
        assert ids(self.submit(harness, item("a3", limit=3))) == ["a2", "a3"]

    def test_bad_ids_are_refused(self, harness: Harness) -> None:
        with pytest.raises(ValueError, match="tenant"):
            harness.tq.enqueue_or_acquire(Q, item("x", "a|b"))
        with pytest.raises(ValueError, match="queue"):
            harness.tq.enqueue_or_acquire("{q}", item("x"))

    def test_stats_count_events(self, harness: Harness) -> None:
        [r] = self.submit(harness, item("a1"))
        harness.tq.start(Q, "a1", r.token)
        self.finish(harness, r)
        stats = harness.tq.stats(Q)
        assert stats["submitted"] == stats["released"] == stats["success"] == 1
        assert harness.tq.queues() == [Q]
