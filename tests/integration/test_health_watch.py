"""Alerts that start and end, delivered to a real local HTTP server: the watch (degrade,
escalate, recover, de-duplicated in Redis), beat's health check against a real runtime, and a
dead-lettered task on a real worker."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from relay.app_factory import create_app
from relay.catalog import routed_queues
from relay.config import Settings
from relay.models import Base
from relay.monitoring.alerts import (
    Alert,
    AlertManager,
    RedisDeduplicator,
    Severity,
    SlackChannel,
    WebhookChannel,
)
from relay.monitoring.levels import Level, ReadinessChecker, Thresholds
from relay.monitoring.watch import Watch
from relay.retry import FatalTaskError
from relay.runtime import Runtime
from relay.scheduling.metrics import TenantLabels
from relay.scheduling.tenant_queue import NewItem
from relay.tasks.base import RelayTask
from relay.tasks.monitor import check_health
from tests.conftest import migrated_external_db_in_use, run_worker
from tests.waiting import wait_until


@dataclass
class Hook:
    """A local HTTP server keeping every POST (path and JSON body)."""

    url: str
    received: queue.Queue[tuple[str, dict[str, Any]]]

    def drain(self, path: str) -> list[dict[str, Any]]:
        """The bodies POSTed to ``path`` so far (others stay for a later call)."""
        kept, found = [], []
        while not self.received.empty():
            got_path, body = self.received.get()
            (found if got_path == path else kept).append((got_path, body))
        for item in kept:
            self.received.put(item)
        return [body for _, body in found]


@pytest.fixture
def hook() -> Iterator[Hook]:
    received: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            received.put((self.path, json.loads(self.rfile.read(length))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Hook(f"http://127.0.0.1:{server.server_port}", received)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _manager(runtime: Runtime, hook: Hook) -> AlertManager:
    return AlertManager(
        [
            WebhookChannel(hook.url + "/json", min_severity=Severity.INFO),
            SlackChannel(hook.url + "/slack", min_severity=Severity.INFO),
        ],
        RedisDeduplicator(runtime.redis),
        window=300,
    )


def _degraded(severity: Severity = Severity.WARNING) -> Alert:
    return Alert("health.outbox", severity, "outbox is degraded: 90s", {"value": 90.0})


def test_a_condition_alerts_once_escalates_and_recovers_once(runtime: Runtime, hook: Hook) -> None:
    watch = Watch(_manager(runtime, hook), runtime.redis)
    assert [a.key for a in watch.update("health", [_degraded()])] == ["health.outbox"]
    # Still degraded at the next checks: de-duplicated (one message per window).
    assert watch.update("health", [_degraded()]) == []
    # Another process with its own manager shares the de-duplication and the state.
    assert Watch(_manager(runtime, hook), runtime.redis).update("health", [_degraded()]) == []
    escalated = watch.update("health", [_degraded(Severity.CRITICAL)])
    assert [(a.key, a.severity) for a in escalated] == [("health.outbox", Severity.CRITICAL)]
    recovered = watch.update("health", [])
    assert [(a.key, a.resolved) for a in recovered] == [("health.outbox", True)]
    assert watch.update("health", []) == []
    # Degraded again right after: a new condition is sent at once, window or not.
    assert [a.key for a in watch.update("health", [_degraded()])] == ["health.outbox"]

    posted = hook.drain("/json")
    assert [(b["severity"], b["resolved"]) for b in posted] == [
        ("warning", False),
        ("critical", False),
        ("critical", True),
        ("warning", False),
    ]
    assert posted[2]["message"] == "[resolved] outbox is degraded: 90s"
    slack = hook.drain("/slack")
    assert len(slack) == 4
    assert slack[0]["text"].startswith(":warning: relay warning: health.outbox")
    assert slack[2]["text"].startswith(":white_check_mark: relay resolved: health.outbox")
    assert slack[0]["blocks"][1]["text"]["text"] == "outbox is degraded: 90s"


def test_beats_health_check_alerts_on_a_missing_consumer_and_on_recovery(
    runtime: Runtime, hook: Hook
) -> None:
    manager = _manager(runtime, hook)
    first = check_health(runtime, manager)
    assert first["components"]["workers"] == "critical"
    assert "health.workers" in first["alerts"]
    workers = [b for b in hook.drain("/json") if b["key"] == "health.workers"]
    assert len(workers) == 1
    assert workers[0]["severity"] == "critical"
    assert "no live consumer" in workers[0]["message"]
    assert check_health(runtime, manager)["alerts"].count("health.workers") == 0  # no repeat

    runtime.presence.announce("all@host", routed_queues())
    healed = check_health(runtime, manager)
    assert healed["components"]["workers"] == "healthy"
    assert "health.workers" in healed["resolved"]
    recovered = [b for b in hook.drain("/json") if b["key"] == "health.workers"]
    assert [(b["resolved"], b["severity"]) for b in recovered] == [(True, "critical")]


@pytest.fixture
def alerting_app(settings: Settings, hook: Hook) -> Iterator[Flask]:
    configured = settings.model_copy(
        update={
            "monitoring": settings.monitoring.model_copy(
                update={"alert_slack_webhook": hook.url + "/slack"}
            )
        }
    )
    app = create_app(configured)
    if not migrated_external_db_in_use(configured):
        Base.metadata.create_all(app.extensions["relay"].db.engine)
    yield app
    app.extensions["relay"].close()


def test_a_dead_lettered_task_alerts_without_its_arguments(alerting_app: Flask, hook: Hook) -> None:
    runtime: Runtime = alerting_app.extensions["relay"]

    @runtime.celery.task(name="tests.doomed", base=RelayTask, bind=True, shared=False)
    def doomed(self: RelayTask, secret: str) -> str:
        raise FatalTaskError("input can never succeed")

    with run_worker(runtime, ["monitor"]):
        for _ in range(2):
            runtime.celery.send_task(
                "tests.doomed", args=["hunter2-argument"], queue="monitor",
                headers={"tenant_id": None},
            )  # fmt: skip
        wait_until(lambda: not hook.received.empty(), 30, "the dead-letter alert")
        wait_until(lambda: len(runtime.dead_letters.list_letters()) >= 2, 30, "both buried")
    slack = [b for b in hook.drain("/slack") if "tests.doomed" in b["text"]]
    assert len(slack) == 1  # the second one is de-duplicated
    assert slack[0]["text"].startswith(":x: relay error: task.dead:tests.doomed:")
    assert "FatalTaskError" in slack[0]["text"]
    assert "hunter2" not in json.dumps(slack[0])
    # The scrape counts them by reason.
    families = text_string_to_metric_families(runtime.metrics.render().decode())
    dead = {
        s.labels["reason"]: s.value
        for family in families
        for s in family.samples
        if s.name == "relay_dead_letters"
    }
    assert sum(dead.values()) == 2, dead


def test_a_busy_cpu_is_a_warning_full_memory_or_disk_critical(runtime: Runtime) -> None:
    # Thresholds of 0: every measured share is past both of them.
    checker = ReadinessChecker(
        runtime.redis,
        runtime.db,
        runtime.presence,
        runtime.bus,
        var_dir=runtime.settings.var_dir,
        thresholds=Thresholds(resources=(0.0, 0.0)),
    )
    resources = next(c for c in checker.ready().components if c.name == "resources")
    assert resources.details["levels"] == {
        "cpu": "warning",
        "memory": "critical",
        "disk": "critical",
    }
    assert resources.level is Level.CRITICAL
    assert set(resources.value) == {"cpu", "memory", "disk"}


def test_noisy_and_slow_tenants_from_the_real_scheduler(runtime: Runtime, hook: Hook) -> None:
    runtime.settings = runtime.settings.model_copy(
        update={
            "monitoring": runtime.settings.monitoring.model_copy(
                update={"noisy_wait_p99": 0.001, "tenant_labels": {"tenant-big": "big"}}
            )
        }
    )
    queue = runtime.dispatcher.queue
    released = []
    for n in range(8):  # up to 6 slots for this tenant
        item = NewItem(f"big-{n}", "tenant-big", "t", "{}", 6, 1)
        released += queue.enqueue_or_acquire("workflow_team", item).released
    for n in range(3):  # one slot for this one: two wait
        item = NewItem(f"small-{n}", "tenant-small", "t", "{}", 1, 1)
        released += queue.enqueue_or_acquire("workflow_team", item).released
    for release in released:  # each start records how long it waited
        queue.start("workflow_team", release.task_id, release.token)
    manager = _manager(runtime, hook)
    first = check_health(runtime, manager)
    assert "tenant.noisy:workflow_team:big" in first["alerts"]
    small = TenantLabels()("tenant-small")
    assert f"tenant.slow:workflow_team:{small}" in first["alerts"]
    noisy = [b for b in hook.drain("/json") if b["key"] == "tenant.noisy:workflow_team:big"]
    assert noisy[0]["details"]["running"] == 6
    assert noisy[0]["details"]["waiting_others"] == 2
    # No new waits since: the slow alerts end; the noisy tenant still holds its slots.
    second = check_health(runtime, manager)
    assert f"tenant.slow:workflow_team:{small}" in second["resolved"]
    assert "tenant.noisy:workflow_team:big" not in second["resolved"]
