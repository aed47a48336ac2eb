"""Error reporting with the real sentry-sdk against a local endpoint that records envelopes:
dead-lettered tasks, failed outcomes and unhandled API errors arrive with tenant and task tags,
and neither task arguments nor secrets leave the process."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sentry_sdk
from flask import Flask

from relay.app_factory import create_app
from relay.config import Settings
from relay.models.base import Base
from relay.monitoring.errors_reporting import scrub_event
from relay.retry import FatalTaskError, OutcomeFailed
from relay.runtime import Runtime
from relay.tasks.base import RelayTask
from tests.conftest import migrated_external_db_in_use
from tests.integration.test_api_support import ADMIN_TOKEN, admin_settings
from tests.waiting import wait_until

SECRET_ARG = "argument-that-must-not-leave"
PASSWORD = "hunter2-password"


@dataclass
class Envelopes:
    """What the fake Sentry received: raw bodies and the events inside them."""

    raw: list[bytes] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, body: bytes) -> None:
        lines = body.split(b"\n")
        events = []
        for index in range(1, len(lines) - 1):
            try:
                header = json.loads(lines[index])
            except ValueError:
                continue
            if isinstance(header, dict) and header.get("type") == "event":
                events.append(json.loads(lines[index + 1]))
        with self.lock:
            self.raw.append(body)
            self.events.extend(events)


@pytest.fixture
def envelopes() -> Iterator[tuple[Envelopes, str]]:
    """A local endpoint speaking Sentry's envelope API; yields it with its DSN."""
    received = Envelopes()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path.endswith("/envelope/"):
                received.add(body)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received, f"http://publickey@127.0.0.1:{server.server_port}/42"
    finally:
        sentry_sdk.get_client().close(timeout=2)
        sentry_sdk.init()  # no DSN: the process reports nothing any more
        server.shutdown()
        server.server_close()


@pytest.fixture
def reporting_app(
    settings: Settings, envelopes: tuple[Envelopes, str]
) -> Iterator[tuple[Flask, Runtime]]:
    _, dsn = envelopes
    configured = admin_settings(settings).model_copy(
        update={"sentry": settings.sentry.model_copy(update={"dsn": dsn, "environment": "test"})}
    )
    app = create_app(configured)
    runtime: Runtime = app.extensions["relay"]
    if not migrated_external_db_in_use(configured):
        Base.metadata.create_all(runtime.db.engine)
    yield app, runtime
    runtime.close()


def _events(received: Envelopes, count: int) -> list[dict[str, Any]]:
    sentry_sdk.flush(timeout=5)
    return wait_until(
        lambda: received.events if len(received.events) >= count else None,
        timeout=10,
        what=f"{count} Sentry event(s)",
    )


def test_dead_lettered_and_failed_tasks_are_reported_with_tags_and_without_arguments(
    reporting_app: tuple[Flask, Runtime], envelopes: tuple[Envelopes, str]
) -> None:
    _, runtime = reporting_app
    received, _ = envelopes

    @runtime.celery.task(name="tests.sentry.fatal", base=RelayTask, bind=True, shared=False)
    def fatal(self: RelayTask, secret: str) -> None:
        raise FatalTaskError(f"cannot reach redis://relay:{PASSWORD}@db:6379/0")

    @runtime.celery.task(name="tests.sentry.outcome", base=RelayTask, bind=True, shared=False)
    def outcome(self: RelayTask, secret: str) -> None:
        raise OutcomeFailed("the run's graph failed")

    # Eager: the same chain a worker runs, on this thread.
    dead = fatal.apply(args=[SECRET_ARG], headers={"tenant_id": "tenant-7"})
    failed = outcome.apply(args=[SECRET_ARG], headers={"tenant_id": "tenant-7"})
    assert (dead.state, failed.state) == ("FAILURE", "FAILURE")

    events = _events(received, 2)
    by_task = {e["tags"]["relay.task"]: e for e in events}
    dead_event = by_task["tests.sentry.fatal"]
    assert dead_event["tags"]["relay.tenant_id"] == "tenant-7"
    assert dead_event["tags"]["relay.outcome"] == "dead_lettered"
    assert dead_event["tags"]["relay.reason"] == "fatal"
    assert dead_event["tags"]["relay.task_id"] == dead.id
    assert dead_event["level"] == "error"
    assert dead_event["environment"] == "test"
    assert dead_event["exception"]["values"][-1]["type"] == "FatalTaskError"
    assert "redis://relay:***@db" in dead_event["exception"]["values"][-1]["value"]
    failed_event = by_task["tests.sentry.outcome"]
    assert failed_event["tags"]["relay.outcome"] == "failed"
    assert failed_event["level"] == "warning"
    assert runtime.dead_letters.count() == 1, "only the fatal task was dead-lettered"
    raw = b"".join(received.raw)
    assert SECRET_ARG.encode() not in raw
    assert PASSWORD.encode() not in raw


def test_an_unhandled_api_error_is_reported_without_credentials_or_body(
    reporting_app: tuple[Flask, Runtime], envelopes: tuple[Envelopes, str]
) -> None:
    app, _ = reporting_app
    received, _ = envelopes

    def boom() -> str:
        raise RuntimeError("unexpected state")

    app.add_url_rule("/v1/boom", "boom", boom, methods=["POST"])
    response = app.test_client().post(
        "/v1/boom",
        json={"password": SECRET_ARG},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert response.status_code == 500
    assert response.json["code"] == "internal_error"

    (event,) = _events(received, 1)
    assert event["tags"]["relay.endpoint"] == "/v1/boom"
    assert event["tags"]["relay.method"] == "POST"
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    raw = b"".join(received.raw)
    assert SECRET_ARG.encode() not in raw
    assert ADMIN_TOKEN.encode() not in raw


def test_scrubbing_drops_request_data_extras_and_frame_variables() -> None:
    event: dict[str, Any] = {
        "request": {
            "url": "http://u:pw@h/x",
            "data": {"password": "p"},
            "cookies": {"session": "s"},
            "query_string": "token=t",
            "headers": {"Authorization": "Bearer t", "Content-Type": "application/json"},
        },
        "extra": {"celery-job": {"args": ["secret"]}},
        "exception": {
            "values": [
                {
                    "type": "E",
                    "value": "amqp://a:b@c//",
                    "stacktrace": {"frames": [{"function": "f", "vars": {"key": "k"}}]},
                }
            ]
        },
        "tags": {"api_token": "t", "relay.task": "x"},
        "contexts": {"celery": {"args": ["secret"]}},
    }
    scrubbed = scrub_event(event)
    assert scrubbed["request"] == {
        "url": "http://u:***@h/x",
        "headers": {"Content-Type": "application/json"},
    }
    assert "extra" not in scrubbed
    assert "celery" not in scrubbed["contexts"]
    value = scrubbed["exception"]["values"][0]
    assert value["value"] == "amqp://a:***@c//"
    assert "vars" not in value["stacktrace"]["frames"][0]
    assert scrubbed["tags"] == {"api_token": "***", "relay.task": "x"}
