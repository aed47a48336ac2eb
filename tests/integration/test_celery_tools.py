"""Celery's own tools against relay: the ``celery`` CLI, task events, stable worker names.

A real ``relay worker`` process consumes the monitor queue; the real ``celery`` command (with
``-A relay.celery_app``) inspects it; a real events receiver sees a task from publish to outcome.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from celery.result import AsyncResult
from flask import Flask

from relay import catalog
from relay.config import Settings
from relay.models import TaskRecord, TaskStatus
from relay.runtime import Runtime
from relay.services.app_service import AppService
from relay.services.tenant_service import TenantService
from relay.services.workflow_run_service import WorkflowRunService
from relay.worker.names import node_name
from tests.integration.streaming.support import WORKFLOW_QUEUES, workflow_graph
from tests.waiting import wait_until

CELERY = str(Path(sys.executable).with_name("celery"))


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env.update(
        RELAY_REDIS_URL=str(settings.redis.url),
        RELAY_DATABASE_URL=settings.database_url,
        RELAY_VAR_DIR=str(settings.var_dir),
        RELAY_LOG_LEVEL="WARNING",
    )
    return env


def _celery(settings: Settings, *args: str) -> str:
    done = subprocess.run(
        [CELERY, "-A", "relay.celery_app", *args],
        env=_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@contextmanager
def relay_worker_process(
    settings: Settings, queues: str, **env: str
) -> Iterator[subprocess.Popen[str]]:
    """``relay worker -Q <queues>`` as a process of its own (the schema must be in place).

    A process, not a thread of the test: failing tasks format their tracebacks there, and
    CPython 3.11.7 can corrupt its parser state when threads of one process do so at once.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "relay", "worker", "-Q", queues, "-c", "1", "--pool", "solo"],
        env={**_env(settings), **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def relay_worker(app: Flask, settings: Settings) -> Iterator[subprocess.Popen[str]]:
    """``relay worker -Q monitor``."""
    with relay_worker_process(settings, "monitor") as proc:
        yield proc


class EventLog:
    """A real ``celery.events.EventReceiver`` on its own thread, keeping every event."""

    def __init__(self, runtime: Runtime) -> None:
        self.app = runtime.celery
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._receiver: Any = None
        self._thread = threading.Thread(target=self._run, name="events", daemon=True)

    def _keep(self, event: dict[str, Any]) -> None:
        with self._lock:
            self.events.append(event)

    def _run(self) -> None:
        with self.app.connection_for_read() as conn:
            self._receiver = self.app.events.Receiver(conn, handlers={"*": self._keep})
            # Without a timeout the loop polls once a second and ends when should_stop is set.
            self._receiver.capture(limit=None, timeout=None, wakeup=False)

    def __enter__(self) -> EventLog:
        self._thread.start()
        # Asking workers for a heartbeat until one arrives proves both ends are live (the
        # receiver bound, the worker's control consumer listening).
        asked = [0.0]

        def heartbeat_seen() -> bool:
            if time.monotonic() - asked[0] > 0.5:
                self.app.control.heartbeat()
                asked[0] = time.monotonic()
            return "worker-heartbeat" in self.types()

        wait_until(heartbeat_seen, what="a worker heartbeat")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._receiver is not None:
            self._receiver.should_stop = True
        self._thread.join(timeout=10)

    def types(self, task_id: str | None = None) -> list[str]:
        with self._lock:
            return [e["type"] for e in self.events if task_id is None or e.get("uuid") == task_id]


def test_celery_cli_and_events_see_a_relay_worker_and_its_tasks(
    runtime: Runtime, settings: Settings, relay_worker: subprocess.Popen[str]
) -> None:
    expected = node_name(["monitor"], socket.gethostname())
    assert expected == f"relay-monitor@{socket.gethostname()}"

    def replies() -> list[str]:
        assert relay_worker.poll() is None, (
            relay_worker.stderr.read() if relay_worker.stderr else ""
        )
        return [name for reply in runtime.celery.control.ping(timeout=0.5) for name in reply]

    assert wait_until(replies, timeout=60, what="the relay worker to answer") == [expected]

    pong = json.loads(_celery(settings, "inspect", "ping", "--json", "--timeout", "5"))
    assert pong == {expected: {"ok": "pong"}}
    queues = json.loads(_celery(settings, "inspect", "active_queues", "--json", "--timeout", "5"))
    assert [q["name"] for q in queues[expected]] == ["monitor"]
    status = _celery(settings, "status", "--timeout", "5")
    assert f"{expected}: OK" in status
    assert "1 node online" in status

    with EventLog(runtime) as events:
        result = runtime.celery.send_task(catalog.PING.name, args=["events"])
        assert result.get(timeout=30)["pong"] == "events"
        wanted = ["task-sent", "task-received", "task-started", "task-succeeded"]
        seen = wait_until(
            lambda: (t := events.types(result.id)) and all(w in t for w in wanted) and t,
            what="the task's events",
        )
        assert [t for t in seen if t in wanted] == wanted
        sent = next(e for e in events.events if e["type"] == "task-sent")
        assert sent["name"] == catalog.PING.name
        assert sent["queue"] == "monitor"
        # Events show that there are arguments, never what they are.
        received = next(e for e in events.events if e["type"] == "task-received")
        for event in (sent, received):
            assert event["args"] == "<1 argument(s) hidden>"
            assert "events" not in event["args"] + event["kwargs"]


def test_task_events_can_be_turned_off(settings: Settings) -> None:
    from relay.adapters.broker import celery_config

    off = settings.model_copy(
        update={"celery": settings.celery.model_copy(update={"events": False})}
    )
    config = celery_config(off, str(settings.redis.url))
    assert config["worker_send_task_events"] is False
    assert config["task_send_sent_event"] is False
    on = celery_config(settings, str(settings.redis.url))
    assert on["worker_send_task_events"] is True
    assert on["task_send_sent_event"] is True


def test_a_failed_workflow_run_is_a_failed_task_and_no_dead_letter(
    runtime: Runtime, settings: Settings
) -> None:
    tenant = TenantService(runtime).create("fails")
    apps = AppService(runtime)
    app = apps.create(tenant.id, name="failing", mode="workflow")
    apps.sync_draft_workflow(tenant.id, app.id, workflow_graph(llm_nodes=2))
    apps.publish_workflow(tenant.id, app.id)
    # Runs fail on their second node: one node run allowed in all.
    worker = relay_worker_process(
        settings,
        ",".join(WORKFLOW_QUEUES),
        RELAY_WORKFLOW_MAX_STEPS="1",
        RELAY_WORKFLOW_LLM_TOKEN_DELAY="0",
    )
    with worker, EventLog(runtime) as events:
        started = WorkflowRunService(runtime).start(
            tenant.id, app.id, user="alice", inputs={"topic": "limits"}
        )

        def run_task() -> TaskRecord | None:
            with runtime.db.session() as session:
                record = (
                    session.query(TaskRecord)
                    .filter(TaskRecord.name == catalog.RUN_WORKFLOW.name)
                    .one_or_none()
                )
                return record if record is not None and TaskStatus(record.status).terminal else None

        record = wait_until(run_task, what="the run task to end")
        task_id = record.id
        wait_until(lambda: "task-failed" in events.types(task_id), what="task-failed event")
        # The run record is written through the workflow_storage queue: wait with the worker.
        service = WorkflowRunService(runtime)
        detail = wait_until(
            lambda: (
                (d := service.detail(tenant.id, started.run_id, "alice")).status == "failed" and d
            ),
            what="the run record to say failed",
        )
    assert record.status == TaskStatus.FAILURE
    assert started.run_id in (record.error or "")
    result = AsyncResult(task_id, app=runtime.celery)
    assert result.state == "FAILURE"
    assert type(result.result).__name__ == "WorkflowRunFailed"
    assert started.run_id in str(result.result)
    failed = next(e for e in events.events if e["type"] == "task-failed")
    assert started.run_id in failed["exception"]
    # The run's record says why; nothing was dead-lettered (there is nothing to replay).
    assert runtime.dead_letters.count() == 0
    assert "max steps exceeded" in (detail.error or "")
