"""``relay.ops_trace.deliver`` against a real HTTP endpoint (``http.server`` in a thread)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select

from relay.config import OpsTraceSettings, Settings
from relay.models import OpsTrace, OpsTraceStatus, TaskRecord, TaskStatus, Tenant
from relay.retry import FatalTaskError, RetryableTaskError
from relay.runtime import Runtime
from relay.tasks.ops_trace import failure_counts, retry_after

DELIVER = "relay.ops_trace.deliver"
APP = "app-1"
PAYLOAD = {"message_id": "m-1", "inputs": {"q": "hi"}, "latency": 0.25}


@dataclass
class Endpoint:
    """What the trace endpoint answers, and what it received."""

    url: str = ""
    status: int = 200
    # Statuses to answer first, one per request, before ``status``.
    first: list[int] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    received: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)


def _handler(endpoint: Endpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            endpoint.received.append((dict(self.headers), body))
            status = endpoint.first.pop(0) if endpoint.first else endpoint.status
            text = b'{"ok": true}' if status < 300 else b'{"error": "nope"}'
            self.send_response(status)
            for name, value in endpoint.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep the test output clean

    return Handler


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    state = Endpoint()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}/traces"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def settings(settings: Settings, endpoint: Endpoint) -> Settings:
    """The suite's settings, with traces going to the local endpoint."""
    ops_trace = OpsTraceSettings(endpoint=endpoint.url, timeout=5)
    return settings.model_copy(update={"ops_trace": ops_trace})


@pytest.fixture
def tenant(runtime: Runtime) -> str:
    with runtime.db.transaction() as session:
        row = Tenant(name="acme")
        session.add(row)
        session.flush()
        return row.id


def deliver(runtime: Runtime, tenant: str, key: str, payload: Any = PAYLOAD) -> Any:
    """Run the task body in this process with the outbox's headers, raising what it raises."""
    task = runtime.celery.tasks[DELIVER]
    headers = {"idempotency_key": key, "tenant_id": tenant}
    return task.apply(args=[tenant, APP, "message", payload], headers=headers, throw=True).get()


def trace(runtime: Runtime, trace_id: str) -> OpsTrace:
    with runtime.db.session() as session:
        row = session.get(OpsTrace, trace_id)
        assert row is not None
        return row


def only_trace(runtime: Runtime) -> OpsTrace:
    with runtime.db.session() as session:
        rows = list(session.scalars(select(OpsTrace)))
        assert len(rows) == 1
        return rows[0]


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def test_a_trace_is_stored_and_delivered_once_through_a_worker(
    runtime: Runtime, worker: Any, endpoint: Endpoint, tenant: str
) -> None:
    headers = {"idempotency_key": "trace-1", "tenant_id": tenant}
    args = [tenant, APP, "message", PAYLOAD]

    first = runtime.celery.send_task(DELIVER, args=args, headers=headers).get(timeout=30)
    again = runtime.celery.send_task(DELIVER, args=args, headers=headers).get(timeout=30)

    assert first["status"] == "delivered"
    assert again == {"trace_id": first["trace_id"], "status": "delivered", "skipped": "duplicate"}
    row = trace(runtime, first["trace_id"])
    assert row.status == OpsTraceStatus.DELIVERED
    assert row.attempts == 1
    assert row.delivered_at is not None
    assert (row.tenant_id, row.app_id, row.trace_type, row.payload) == (
        tenant,
        APP,
        "message",
        PAYLOAD,
    )
    assert len(endpoint.received) == 1
    sent_headers, body = endpoint.received[0]
    assert body["id"] == row.id
    assert body["payload"] == PAYLOAD
    assert (body["tenant_id"], body["app_id"], body["trace_type"]) == (tenant, APP, "message")
    assert sent_headers["Idempotency-Key"] == row.id
    assert failure_counts(runtime.redis, APP) == {}


def test_a_server_error_is_retryable_counted_and_the_retry_delivers(
    runtime: Runtime, endpoint: Endpoint, tenant: str
) -> None:
    # apply() runs the task's whole retry sequence through the chain, without the delays.
    endpoint.first = [500]
    endpoint.headers = {"Retry-After": "7"}

    outcome = deliver(runtime, tenant, "trace-2")

    row = only_trace(runtime)
    assert outcome == {"trace_id": row.id, "status": "delivered"}
    assert row.status == OpsTraceStatus.DELIVERED
    assert row.attempts == 2
    assert [body["id"] for _, body in endpoint.received] == [row.id, row.id]
    assert failure_counts(runtime.redis, APP) == {today(): 1}
    runtime.lifecycle.flush()
    with runtime.db.session() as session:
        record = session.scalars(select(TaskRecord).where(TaskRecord.name == DELIVER)).one()
    assert (record.status, record.attempts) == (TaskStatus.SUCCESS, 2)


def test_a_server_error_that_persists_is_dead_lettered_with_the_servers_delay(
    runtime: Runtime, endpoint: Endpoint, tenant: str
) -> None:
    endpoint.status = 500
    endpoint.headers = {"Retry-After": "7"}

    with pytest.raises(RetryableTaskError, match="500") as raised:
        deliver(runtime, tenant, "trace-2b")

    assert raised.value.delay == 7
    row = only_trace(runtime)
    assert row.status == OpsTraceStatus.FAILED
    assert row.last_error is not None
    assert "500" in row.last_error
    attempts = len(endpoint.received)
    assert attempts == row.attempts > 1, "every attempt of the policy ran"
    assert failure_counts(runtime.redis, APP) == {today(): attempts}
    [letter] = runtime.dead_letters.list_letters()
    assert (letter.task_name, letter.attempts) == (DELIVER, attempts)


def test_too_many_requests_is_retryable_after_the_servers_delay(
    runtime: Runtime, endpoint: Endpoint, tenant: str
) -> None:
    endpoint.status = 429
    endpoint.headers = {"Retry-After": "3"}
    with pytest.raises(RetryableTaskError) as raised:
        deliver(runtime, tenant, "trace-3")
    assert raised.value.delay == 3


def test_a_client_error_is_fatal(runtime: Runtime, endpoint: Endpoint, tenant: str) -> None:
    endpoint.status = 400
    with pytest.raises(FatalTaskError, match="400"):
        deliver(runtime, tenant, "trace-4")
    row = only_trace(runtime)
    assert row.status == OpsTraceStatus.FAILED
    assert row.last_error is not None
    assert "nope" in row.last_error
    assert failure_counts(runtime.redis, APP) == {today(): 1}


def test_an_unreachable_endpoint_is_retryable(runtime: Runtime, tenant: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/traces"
    runtime.settings = runtime.settings.model_copy(
        update={"ops_trace": OpsTraceSettings(endpoint=dead, timeout=2)}
    )
    with pytest.raises(RetryableTaskError, match="cannot reach") as raised:
        deliver(runtime, tenant, "trace-5")
    assert raised.value.delay is None
    row = only_trace(runtime)
    assert row.status == OpsTraceStatus.FAILED
    assert failure_counts(runtime.redis, APP) == {today(): row.attempts}


def test_without_an_endpoint_the_trace_is_only_stored(
    runtime: Runtime, endpoint: Endpoint, tenant: str
) -> None:
    runtime.settings = runtime.settings.model_copy(update={"ops_trace": OpsTraceSettings()})
    outcome = deliver(runtime, tenant, "trace-6")
    assert outcome["status"] == "pending"
    row = only_trace(runtime)
    assert (row.status, row.attempts, row.payload) == (OpsTraceStatus.PENDING, 0, PAYLOAD)
    assert endpoint.received == []


@pytest.mark.parametrize("payload", [["not", "an", "object"], "text", None])
def test_a_payload_that_is_not_an_object_is_fatal(
    runtime: Runtime, endpoint: Endpoint, tenant: str, payload: Any
) -> None:
    with pytest.raises(FatalTaskError, match="JSON object"):
        deliver(runtime, tenant, "trace-7", payload=payload)
    assert endpoint.received == []


def test_an_unknown_tenant_is_fatal(runtime: Runtime, endpoint: Endpoint) -> None:
    with pytest.raises(FatalTaskError, match="unknown tenant"):
        deliver(runtime, "no-such-tenant", "trace-8")
    assert endpoint.received == []


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after(None) is None
    assert retry_after("soon") is None
    assert retry_after("12") == 12
    assert retry_after("-5") == 0
    assert retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30
    assert retry_after("999999") == 900  # clamped
