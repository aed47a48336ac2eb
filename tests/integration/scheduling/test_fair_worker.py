"""Concurrent producers and a real Celery worker through the fair dispatcher, on real Redis."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from typing import Any

from relay.config import Plan, TenancySettings
from relay.runtime import Runtime
from relay.scheduling.dispatcher import FairDispatcher
from relay.scheduling.gate import run_fairly
from relay.scheduling.settings import SchedulingSettings
from relay.scheduling.tenant_queue import RedisTenantQueue
from tests.conftest import run_worker

QUEUE = "dataset"
PLANS = {"t-sandbox": Plan.SANDBOX, "t-pro": Plan.PROFESSIONAL, "t-team": Plan.TEAM}
TENANCY = TenancySettings(
    concurrency={Plan.SANDBOX: 1, Plan.PROFESSIONAL: 2, Plan.TEAM: 3, Plan.ENTERPRISE: 4}
)


class Ledger:
    """What the worker did, recorded from inside the task."""

    def __init__(self, expected: int) -> None:
        self.cond = threading.Condition()
        self.expected = expected
        self.runs: list[str] = []
        self.running: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()

    def enter(self, tenant: str) -> None:
        with self.cond:
            self.running[tenant] += 1
            self.peak[tenant] = max(self.peak[tenant], self.running[tenant])

    def leave(self, tenant: str, task_id: str) -> None:
        with self.cond:
            self.running[tenant] -= 1
            self.runs.append(task_id)
            self.cond.notify_all()

    def wait_all(self, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.runs) >= self.expected, timeout)


def test_producers_and_workers_never_exceed_n_and_run_each_item_once(runtime: Runtime) -> None:
    settings = SchedulingSettings(
        key_prefix=f"test:fair:{uuid.uuid4().hex[:8]}", window=6, lease_ttl=10
    )
    dispatcher = FairDispatcher(
        RedisTenantQueue(runtime.redis, settings), runtime.celery, settings, TENANCY
    )
    per_producer, producers = 20, 6
    ledger = Ledger(per_producer * producers)

    @runtime.celery.task(name="tests.fair_work", bind=True)
    def fair_work(self: Any, tenant: str) -> None:
        def body() -> None:
            ledger.enter(tenant)
            time.sleep(0.03)  # the work itself: long enough for a tenant's runs to overlap
            ledger.leave(tenant, self.request.id)

        run_fairly(dispatcher, self.request, body)

    samples: list[dict[str, int]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append({s.tenant: s.running for s in dispatcher.queue.snapshot(QUEUE)})
            stop.wait(0.002)

    submitted: list[str] = []
    lock = threading.Lock()

    def produce(index: int) -> None:
        for n in range(per_producer):
            tenant = list(PLANS)[(index + n) % len(PLANS)]
            task_id = dispatcher.submit(
                tenant, PLANS[tenant], "tests.fair_work", [tenant], queue=QUEUE
            )
            with lock:
                submitted.append(task_id)

    sampler = threading.Thread(target=sample)
    with run_worker(runtime, [QUEUE], concurrency=8):
        sampler.start()
        threads = [threading.Thread(target=produce, args=(i,)) for i in range(producers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert ledger.wait_all(timeout=40), f"{len(ledger.runs)} of {ledger.expected} ran"
        stop.set()
        sampler.join()
    dispatcher.close()

    assert sorted(ledger.runs) == sorted(submitted), "every item ran, none twice"
    assert len(set(submitted)) == len(submitted)
    for tenant, plan in PLANS.items():
        limit = TENANCY.concurrency[plan]
        assert ledger.peak[tenant] <= limit, (tenant, ledger.peak)
        assert max(s.get(tenant, 0) for s in samples) <= limit
    assert ledger.peak["t-team"] > 1, "the team tenant did run in parallel"
    assert len(samples) > 10
    assert dispatcher.queue.snapshot(QUEUE) == []
    stats = dispatcher.queue.stats(QUEUE)
    assert stats["success"] == stats["submitted"] == len(submitted)


def test_a_celery_retry_frees_the_slot_and_the_retry_waits_its_turn(runtime: Runtime) -> None:
    settings = SchedulingSettings(key_prefix=f"test:fair:{uuid.uuid4().hex[:8]}", lease_ttl=10)
    dispatcher = FairDispatcher(
        RedisTenantQueue(runtime.redis, settings), runtime.celery, settings, TENANCY
    )
    ledger = Ledger(expected=3)
    attempts: Counter[str] = Counter()

    @runtime.celery.task(name="tests.fair_flaky", bind=True, max_retries=3)
    def fair_flaky(self: Any, tenant: str) -> None:
        def body() -> None:
            ledger.enter(tenant)
            attempts[self.request.id] += 1
            if self.request.retries == 0:
                ledger.leave(tenant, "retried")
                ledger.runs.remove("retried")
                raise self.retry(countdown=0)
            time.sleep(0.01)
            ledger.leave(tenant, self.request.id)

        run_fairly(dispatcher, self.request, body)

    ids: list[str] = []

    def produce() -> None:
        # A producer thread, as in the first test: a send from the main thread would leave a
        # result subscription behind that outlives the session's Redis.
        for _ in range(3):
            ids.append(
                dispatcher.submit(
                    "t-sandbox", Plan.SANDBOX, "tests.fair_flaky", ["t-sandbox"], queue=QUEUE
                )
            )

    with run_worker(runtime, [QUEUE], concurrency=4):
        producer = threading.Thread(target=produce)
        producer.start()
        producer.join()
        assert ledger.wait_all(timeout=30), ledger.runs
    dispatcher.close()

    assert sorted(ledger.runs) == sorted(ids)
    assert attempts == dict.fromkeys(ids, 2), "one retry each, then success"
    assert ledger.peak["t-sandbox"] == 1, "the sandbox limit held through the retries"
    assert dispatcher.queue.snapshot(QUEUE) == []
    stats = dispatcher.queue.stats(QUEUE)
    assert (stats["retry"], stats["success"]) == (3, 3)
