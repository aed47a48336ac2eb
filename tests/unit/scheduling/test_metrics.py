"""Scheduler metrics: per-tenant series capped to the busiest tenants plus "other"."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from relay.scheduling.metrics import register_metrics, tenant_snapshot, top_tenants
from relay.scheduling.settings import SchedulingSettings
from relay.scheduling.tenant_queue import NewItem
from relay.scheduling.tenant_queue_memory import InMemoryTenantQueue

SETTINGS = SchedulingSettings(window=3, wait_buckets=(0.1, 1.0))


def _busy_queue() -> InMemoryTenantQueue:
    queue = InMemoryTenantQueue(SETTINGS)
    released = []
    for tenant, count in (("big", 5), ("mid", 3), ("small", 1), ("tiny", 1)):
        for n in range(count):
            new = NewItem(f"{tenant}{n}", tenant, "t", "{}", 1, 1)
            released += queue.enqueue_or_acquire("q", new).released
    for release in released:
        queue.start("q", release.task_id, release.token)
    return queue


def test_top_tenants_is_stable_on_ties() -> None:
    assert top_tenants({"b": 1, "a": 1, "c": 5}, 2) == {"c", "a"}


def test_tenant_labels_are_capped_and_the_rest_is_other() -> None:
    queue = _busy_queue()
    registry = CollectorRegistry()
    register_metrics(registry, queue, top=2, buckets=SETTINGS.wait_buckets)
    text = generate_latest(registry).decode()
    assert 'relay_scheduler_waiting{queue="q",tenant="big"} 4.0' in text
    assert 'relay_scheduler_waiting{queue="q",tenant="mid"} 2.0' in text
    assert 'relay_scheduler_running{queue="q",tenant="other"} 1.0' in text
    assert 'tenant="small"' not in text
    assert 'tenant="tiny"' not in text
    assert 'relay_scheduler_vruntime{queue="q",tenant="big"}' in text
    assert 'relay_scheduler_events_total{event="submitted",queue="q"} 10.0' in text
    assert "relay_scheduler_queue_wait_seconds_bucket" in text
    assert 'relay_scheduler_queue_wait_seconds_count{queue="q",tenant="other"}' in text


def test_snapshot_lists_the_busiest_first() -> None:
    rows = tenant_snapshot(_busy_queue())
    assert [r.tenant for r in rows][:2] == ["big", "mid"]
    assert tenant_snapshot(_busy_queue(), "nope") == []


def test_a_scrape_survives_an_unreachable_scheduler() -> None:
    class Down(InMemoryTenantQueue):
        def queues(self) -> list[str]:
            raise ConnectionError("redis down")

    registry = CollectorRegistry()
    register_metrics(registry, Down(SETTINGS), top=2, buckets=SETTINGS.wait_buckets)
    assert "relay_scheduler_waiting" in generate_latest(registry).decode()
