"""Alerts: severities, de-duplication (in memory and across processes in Redis), log and webhook."""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis

from relay.adapters.logs import JsonFormatter
from relay.config import load_settings
from relay.monitoring.alerts import (
    DEDUP_PREFIX,
    Alert,
    AlertManager,
    LogChannel,
    MemoryDeduplicator,
    RedisDeduplicator,
    Severity,
    WebhookChannel,
)


@dataclass
class Hook:
    """A local HTTP server that records every POST and answers with ``status``."""

    url: str
    received: queue.Queue[dict[str, Any]]
    status: list[int]


@pytest.fixture
def hook() -> Iterator[Hook]:
    received: queue.Queue[dict[str, Any]] = queue.Queue()
    status = [204]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            received.put(
                {
                    "path": self.path,
                    "content_type": self.headers.get("Content-Type"),
                    "body": json.loads(self.rfile.read(length)),
                }
            )
            self.send_response(status[0])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Hook(f"http://127.0.0.1:{server.server_port}/alerts", received, status)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    for key in client.scan_iter(match=DEDUP_PREFIX + "*"):
        client.delete(key)
    yield client
    client.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """A channel that keeps what it is sent."""

    name = "recorder"

    def __init__(self) -> None:
        self.sent: list[Alert] = []

    def send(self, alert: Alert) -> None:
        self.sent.append(alert)


def _alert(key: str = "queue.backlog:dataset", severity: Severity = Severity.WARNING) -> Alert:
    return Alert(key, severity, f"{key} is unhappy", {"length": 1500})


def test_severities_are_ordered_and_map_to_log_levels() -> None:
    ordered = [Severity.INFO, Severity.WARNING, Severity.ERROR, Severity.CRITICAL]
    assert [s.rank for s in ordered] == sorted(s.rank for s in ordered)
    assert Severity.CRITICAL.log_level == logging.CRITICAL
    assert Severity("warning") is Severity.WARNING


def test_memory_dedup_suppresses_within_the_window_only() -> None:
    clock = Clock()
    recorder = Recorder()
    manager = AlertManager([recorder], MemoryDeduplicator(clock), window=60)
    assert manager.raise_alert(_alert())
    assert not manager.raise_alert(_alert())
    clock.now += 59
    assert not manager.raise_alert(_alert())
    clock.now += 2
    assert manager.raise_alert(_alert())
    assert len(recorder.sent) == 2


def test_other_keys_and_escalations_are_not_suppressed() -> None:
    recorder = Recorder()
    manager = AlertManager([recorder], MemoryDeduplicator(), window=600)
    sent = manager.raise_all(
        [
            _alert("queue.backlog:dataset"),
            _alert("queue.backlog:mail"),
            _alert("queue.backlog:dataset", Severity.CRITICAL),
            _alert("queue.backlog:dataset"),
        ]
    )
    assert [(a.key, a.severity) for a in sent] == [
        ("queue.backlog:dataset", Severity.WARNING),
        ("queue.backlog:mail", Severity.WARNING),
        ("queue.backlog:dataset", Severity.CRITICAL),
    ]
    assert recorder.sent == sent


def test_a_zero_window_disables_dedup() -> None:
    recorder = Recorder()
    manager = AlertManager([recorder], MemoryDeduplicator(), window=0)
    assert manager.raise_alert(_alert())
    assert manager.raise_alert(_alert())
    assert len(recorder.sent) == 2


def test_redis_dedup_is_shared_between_managers(redis_client: redis.Redis) -> None:
    """Two managers (as in two processes) on one Redis: the alert goes out once."""
    first, second = Recorder(), Recorder()
    managers = [
        AlertManager([first], RedisDeduplicator(redis_client), window=120),
        AlertManager([second], RedisDeduplicator(redis_client), window=120),
    ]
    results = [m.raise_alert(_alert()) for m in managers]
    assert results == [True, False]
    assert len(first.sent) + len(second.sent) == 1
    key = f"{DEDUP_PREFIX}queue.backlog:dataset:warning"
    assert 0 < redis_client.ttl(key) <= 120
    # Once the window's key is gone (expired), the alert fires again.
    redis_client.delete(key)
    assert managers[1].raise_alert(_alert())
    assert len(second.sent) == 1


def test_redis_dedup_fails_open_when_redis_is_away(caplog: pytest.LogCaptureFixture) -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    recorder = Recorder()
    manager = AlertManager([recorder], RedisDeduplicator(dead), window=60)
    with caplog.at_level(logging.WARNING):
        assert manager.raise_alert(_alert())
    assert len(recorder.sent) == 1
    assert any(getattr(r, "action", "") == "alert.dedup_failed" for r in caplog.records)


def test_log_channel_writes_one_json_line_with_action_alert(
    caplog: pytest.LogCaptureFixture,
) -> None:
    manager = AlertManager([LogChannel()], MemoryDeduplicator(), window=60)
    with caplog.at_level(logging.INFO, logger="relay.alerts"):
        manager.raise_alert(_alert(severity=Severity.CRITICAL))
    (record,) = [r for r in caplog.records if r.name == "relay.alerts"]
    assert record.levelno == logging.CRITICAL
    line = json.loads(JsonFormatter().format(record))
    assert line["action"] == "alert"
    assert line["alert_key"] == "queue.backlog:dataset"
    assert line["severity"] == "critical"
    assert line["details"] == {"length": 1500}
    assert line["message"] == "queue.backlog:dataset is unhappy"


def test_webhook_posts_the_alert_as_json(hook: Hook) -> None:
    manager = AlertManager([WebhookChannel(hook.url)], MemoryDeduplicator(), window=60)
    alert = _alert(severity=Severity.ERROR)
    assert manager.raise_alert(alert)
    posted = hook.received.get(timeout=5)
    assert posted["path"] == "/alerts"
    assert posted["content_type"] == "application/json"
    assert posted["body"] == {"source": "relay", **alert.as_dict()}
    assert posted["body"]["severity"] == "error"
    # The duplicate is not posted.
    assert not manager.raise_alert(_alert(severity=Severity.ERROR))
    manager.raise_alert(_alert("other", Severity.WARNING))
    assert hook.received.get(timeout=5)["body"]["key"] == "other"
    assert hook.received.empty()


def test_webhook_skips_alerts_below_its_severity(hook: Hook) -> None:
    channel = WebhookChannel(hook.url, min_severity=Severity.ERROR)
    manager = AlertManager([channel, LogChannel()], MemoryDeduplicator(), window=60)
    manager.raise_alert(_alert("minor", Severity.WARNING))
    manager.raise_alert(_alert("major", Severity.CRITICAL))
    assert hook.received.get(timeout=5)["body"]["key"] == "major"
    assert hook.received.empty()


@pytest.mark.parametrize("failure", ["http_500", "unreachable"])
def test_webhook_failures_are_logged_not_raised(
    hook: Hook, caplog: pytest.LogCaptureFixture, failure: str
) -> None:
    url = hook.url
    if failure == "http_500":
        hook.status[0] = 500
    else:
        url = "http://127.0.0.1:1/alerts"  # nothing listens on port 1
    recorder = Recorder()
    manager = AlertManager(
        [WebhookChannel(url, timeout=2), recorder], MemoryDeduplicator(), window=60
    )
    with caplog.at_level(logging.WARNING):
        assert manager.raise_alert(_alert())
    failed = [r for r in caplog.records if getattr(r, "action", "") == "alert.webhook_failed"]
    assert len(failed) == 1
    assert failed[0].alert_key == "queue.backlog:dataset"  # type: ignore[attr-defined]
    assert len(recorder.sent) == 1, "a failing channel does not stop the others"


def test_manager_from_settings(hook: Hook, redis_client: redis.Redis, tmp_path: Any) -> None:
    quiet = AlertManager.from_settings(load_settings(var_dir=tmp_path), redis_client)
    assert [c.name for c in quiet.channels] == ["log"]
    settings = load_settings(
        var_dir=tmp_path,
        monitoring={
            "alert_webhook": hook.url,
            "alert_dedup_seconds": 30,
            "alert_webhook_min_severity": "critical",
        },
    )
    manager = AlertManager.from_settings(settings, redis_client)
    assert [c.name for c in manager.channels] == ["log", "webhook"]
    assert manager.window == 30
    assert manager.raise_alert(_alert("disk", Severity.CRITICAL))
    assert hook.received.get(timeout=5)["body"]["key"] == "disk"
    assert not AlertManager.from_settings(settings, redis_client).raise_alert(
        _alert("disk", Severity.CRITICAL)
    ), "de-duplicated through Redis across managers"
