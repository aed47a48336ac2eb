"""The queue monitor: length, oldest age (peeked at the Redis list's tail), consumers, alerts."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from celery import Celery
from celery.result import AsyncResult
from flask import Flask

from relay.app_factory import create_app
from relay.config import Settings
from relay.monitoring.alerts import AlertManager, MemoryDeduplicator, Severity
from relay.monitoring.presence import WorkerPresence
from relay.monitoring.queues import (
    QueueMonitor,
    QueueStatus,
    QueueThresholds,
    evaluate,
    message_age,
)
from relay.runtime import Runtime
from relay.tasks.monitor import check_queues
from tests.conftest import run_worker

THRESHOLDS = QueueThresholds(max_length=3, max_age=60)


@pytest.fixture
def hook() -> Iterator[tuple[str, queue.Queue[dict[str, Any]]]]:
    received: queue.Queue[dict[str, Any]] = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.put(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()
    server.server_close()


@pytest.fixture
def alerting(settings: Settings, hook: tuple[str, Any]) -> Iterator[Runtime]:
    """The runtime with the webhook and tight thresholds configured."""
    monitoring = settings.monitoring.model_copy(
        update={"alert_webhook": hook[0], "queue_max_length": 3, "queue_max_age": 60}
    )
    app: Flask = create_app(settings.model_copy(update={"monitoring": monitoring}))
    runtime: Runtime = app.extensions["relay"]
    if runtime.db.is_sqlite:
        from relay.models.base import Base

        Base.metadata.create_all(runtime.db.engine)
    yield runtime
    runtime.close()


def _status(name: str, length: int, age: float | None, *consumers: str) -> QueueStatus:
    return QueueStatus(name, length, age, tuple(consumers))


def test_evaluate_alerts_on_backlog_age_and_missing_consumer() -> None:
    alerts = evaluate(
        [
            _status("dataset", 2, 5.0, "w1"),  # fine
            _status("mail", 4, 5.0, "w1"),  # too long
            _status("ops_trace", 1, 61.0, "w1"),  # too old
            _status("schedule", 1, None),  # nobody consumes it
            _status("pipeline", 0, None),  # empty and unconsumed: nothing to worry about
        ],
        THRESHOLDS,
    )
    assert [(a.key, a.severity) for a in alerts] == [
        ("queue.backlog:mail", Severity.WARNING),
        ("queue.stale:ops_trace", Severity.WARNING),
        ("queue.no_consumer:schedule", Severity.CRITICAL),
    ]
    assert alerts[2].details == {
        "name": "schedule",
        "length": 1,
        "oldest_age": None,
        "consumers": [],
    }


def test_message_age_from_sent_at_or_eta() -> None:
    now = 1_000_000.0
    assert message_age({"headers": {"sent_at": now - 42}}, now) == pytest.approx(42)
    eta = datetime.fromtimestamp(now - 10, UTC).isoformat()
    assert message_age({"headers": {"eta": eta}}, now) == pytest.approx(10)
    # A delayed message starts waiting at its eta, not when it was sent.
    assert message_age({"headers": {"sent_at": now - 42, "eta": eta}}, now) == pytest.approx(10)
    future = datetime.fromtimestamp(now + 30, UTC).isoformat()
    assert message_age({"headers": {"sent_at": now - 42, "eta": future}}, now) == 0.0
    assert message_age({"headers": {"eta": None}}, now) is None
    assert message_age({}, now) is None


def test_oldest_age_is_the_tail_of_the_list(runtime: Runtime) -> None:
    monitor = QueueMonitor(runtime.celery, runtime.redis)
    assert monitor.oldest_ages()["mail"] is None
    runtime.celery.send_task("relay.ping", args=["first"], queue="mail")
    between = time.time()
    runtime.celery.send_task("relay.ping", args=["second"], queue="mail")
    runtime.celery.send_task("relay.ping", args=["third"], queue="mail")

    later = between + 1000
    ages = monitor.oldest_ages(now=later)
    assert ages["mail"] is not None
    assert ages["mail"] > 1000, "the first message (the list's tail) is the oldest"
    assert ages["mail"] < 1000 + 60
    assert ages["dataset"] is None

    statuses = {s.name: s for s in monitor.statuses({"w1": ["mail"]}, now=later)}
    assert statuses["mail"].length == 3
    assert statuses["mail"].consumers == ("w1",)
    assert statuses["dataset"] == _status("dataset", 0, None)


def test_messages_without_a_timestamp_have_an_unknown_age(runtime: Runtime) -> None:
    # Celery's own send_task, as a producer that is not relay sends: no ``sent_at`` stamp.
    Celery.send_task(runtime.celery, "relay.ping", queue="mail")
    assert QueueMonitor(runtime.celery, runtime.redis).oldest_ages()["mail"] is None
    # A delayed one carries its eta: it counts as waiting from then on.
    Celery.send_task(runtime.celery, "relay.ping", queue="dataset", countdown=-30)
    age = QueueMonitor(runtime.celery, runtime.redis).oldest_ages()["dataset"]
    assert age is not None
    assert 29 < age < 90


def test_check_stores_a_snapshot_and_alerts_once_per_window(runtime: Runtime) -> None:
    for i in range(4):
        runtime.celery.send_task("relay.ping", args=[i], queue="mail")
    WorkerPresence(runtime.redis, 30).announce("w-mail@test", ["mail", "dataset"])
    recorder: list[Any] = []

    class Recorder:
        name = "recorder"

        def send(self, alert: Any) -> None:
            recorder.append(alert)

    manager = AlertManager([Recorder()], MemoryDeduplicator(), window=300)
    tight = runtime.settings.monitoring.model_copy(update={"queue_max_length": 3})
    runtime.settings = runtime.settings.model_copy(update={"monitoring": tight})

    report = check_queues(runtime, manager)
    assert report["queues"]["mail"]["length"] == 4
    assert report["queues"]["mail"]["consumers"] == ["w-mail@test"]
    assert report["alerts"] == ["queue.backlog:mail"]
    snapshot = QueueMonitor(runtime.celery, runtime.redis).latest()
    assert snapshot is not None
    assert snapshot["lengths"]["mail"] == 4
    assert snapshot["oldest_ages"]["mail"] is not None
    assert snapshot["oldest_ages"]["dataset"] is None

    assert check_queues(runtime, manager)["alerts"] == [], "de-duplicated within the window"
    assert [a.key for a in recorder] == ["queue.backlog:mail"]


def test_beat_task_on_a_worker_alerts_the_webhook(
    alerting: Runtime, hook: tuple[str, queue.Queue[dict[str, Any]]]
) -> None:
    """A real worker on ``monitor`` runs the monitor; ``mail`` has work and no consumer."""
    _, received = hook
    for i in range(2):
        alerting.celery.send_task("relay.ping", args=[i], queue="mail")
    # A message published two minutes ago (as if by a process that stamped it then).
    Celery.send_task(
        alerting.celery, "relay.ping", queue="ops_trace", headers={"sent_at": _ago(120)}
    )

    with run_worker(alerting, queues=["monitor"]) as worker:
        first = alerting.celery.send_task("relay.monitor.snapshot_queues")
        report = AsyncResult(first.id, app=alerting.celery).get(timeout=30)
        second = alerting.celery.send_task("relay.monitor.snapshot_queues")
        repeat = AsyncResult(second.id, app=alerting.celery).get(timeout=30)

    assert report["queues"]["monitor"]["consumers"] == [worker.hostname]
    assert report["queues"]["mail"] == {
        "name": "mail",
        "length": 2,
        "oldest_age": report["queues"]["mail"]["oldest_age"],
        "consumers": [],
    }
    assert sorted(report["alerts"]) == [
        "queue.no_consumer:mail",
        "queue.no_consumer:ops_trace",
        "queue.stale:ops_trace",
    ]
    assert repeat["alerts"] == [], "the second run is de-duplicated through Redis"
    posted = sorted((received.get(timeout=10) for _ in range(3)), key=lambda b: b["key"])
    assert [(p["key"], p["severity"]) for p in posted] == [
        ("queue.no_consumer:mail", "critical"),
        ("queue.no_consumer:ops_trace", "critical"),
        ("queue.stale:ops_trace", "warning"),
    ]
    assert posted[0]["details"]["length"] == 2
    assert posted[2]["details"]["oldest_age"] > 100
    assert received.empty()


def _ago(seconds: float) -> float:
    return time.time() - seconds
