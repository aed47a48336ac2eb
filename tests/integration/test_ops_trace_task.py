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


# --- many traces per message (relay.ops_trace.deliver_batch) --------------------------------------

DELIVER_BATCH = "relay.ops_trace.deliver_batch"


def traces(count: int) -> list[dict[str, Any]]:
    return [{"trace_type": "node", "payload": {"node": i}} for i in range(count)]


def deliver_batch(runtime: Runtime, tenant: str, key: str, items: Any) -> Any:
    task = runtime.celery.tasks[DELIVER_BATCH]
    headers = {"idempotency_key": key, "tenant_id": tenant}
    return task.apply(args=[tenant, APP, items], headers=headers, throw=True).get()


def batch_rows(runtime: Runtime, ids: list[str]) -> list[OpsTrace]:
    with runtime.db.session() as session:
        found = {row.id: row for row in session.scalars(select(OpsTrace))}
    return [found[trace_id] for trace_id in ids]


def test_a_batch_is_stored_and_each_trace_delivered_once_through_a_worker(
    runtime: Runtime, worker: Any, endpoint: Endpoint, tenant: str
) -> None:
    headers = {"idempotency_key": "batch-1", "tenant_id": tenant}
    args = [tenant, APP, traces(3)]

    first = runtime.celery.send_task(DELIVER_BATCH, args=args, headers=headers).get(timeout=30)
    again = runtime.celery.send_task(DELIVER_BATCH, args=args, headers=headers).get(timeout=30)

    ids = first["trace_ids"]
    assert len(set(ids)) == 3
    assert first == {"trace_ids": ids, "stored": 3, "delivered": 3}
    assert again == first, "a redelivery meets the same rows and sends nothing again"
    rows = batch_rows(runtime, ids)
    assert [(r.status, r.attempts, r.payload) for r in rows] == [
        (OpsTraceStatus.DELIVERED, 1, {"node": i}) for i in range(3)
    ]
    assert [(h["Idempotency-Key"], body["id"]) for h, body in endpoint.received] == [
        (i, i) for i in ids
    ]
    assert all(body["tenant_id"] == tenant for _, body in endpoint.received)


def test_a_transient_failure_retries_only_the_traces_not_delivered(
    runtime: Runtime, endpoint: Endpoint, tenant: str
) -> None:
    endpoint.first = [200, 503]
    outcome = deliver_batch(runtime, tenant, "batch-2", traces(3))

    ids = outcome["trace_ids"]
    assert outcome["delivered"] == 3
    assert [body["id"] for _, body in endpoint.received] == [ids[0], ids[1], ids[1], ids[2]]
    assert [(r.status, r.attempts) for r in batch_rows(runtime, ids)] == [
        (OpsTraceStatus.DELIVERED, 1),
        (OpsTraceStatus.DELIVERED, 2),
        (OpsTraceStatus.DELIVERED, 1),
    ]
    assert failure_counts(runtime.redis, APP) == {today(): 1}


def test_a_refused_trace_fails_alone_and_the_task_is_dead_lettered(
    runtime: Runtime, endpoint: Endpoint, tenant: str
) -> None:
    endpoint.first = [200, 400, 200]
    with pytest.raises(FatalTaskError, match="1 of 3 traces refused"):
        deliver_batch(runtime, tenant, "batch-3", traces(3))

    rows = sorted(only_rows(runtime), key=lambda r: r.payload["node"])
    assert [r.status for r in rows] == [
        OpsTraceStatus.DELIVERED,
        OpsTraceStatus.FAILED,
        OpsTraceStatus.DELIVERED,
    ]
    assert rows[1].last_error is not None
    assert "400" in rows[1].last_error
    [letter] = runtime.dead_letters.list_letters()
    assert letter.task_name == DELIVER_BATCH


def only_rows(runtime: Runtime) -> list[OpsTrace]:
    with runtime.db.session() as session:
        return list(session.scalars(select(OpsTrace)))


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([], "non-empty list"),
        ("not a list", "non-empty list"),
        ([{"trace_type": "node", "payload": {}}, {"trace_type": "node"}], "trace 1: must be"),
        ([{"trace_type": "node", "payload": {}, "extra": 1}], "trace 0: must be"),
        ([{"trace_type": "", "payload": {}}], "trace 0: invalid trace type"),
        ([{"trace_type": 7, "payload": {}}], "trace 0: invalid trace type"),
        ([{"trace_type": "node", "payload": [1]}], "trace 0: .*JSON object"),
        (traces(1001), "at most 1000"),
    ],
)
def test_a_malformed_batch_is_refused_whole_before_anything_is_stored(
    runtime: Runtime, endpoint: Endpoint, tenant: str, items: Any, message: str
) -> None:
    with pytest.raises(FatalTaskError, match=message):
        deliver_batch(runtime, tenant, "batch-4", items)
    assert only_rows(runtime) == []
    assert endpoint.received == []


def test_another_tenants_message_cannot_reach_a_tenants_traces(
    runtime: Runtime, endpoint: Endpoint, tenant: str
) -> None:
    ids = deliver_batch(runtime, tenant, "batch-5", traces(2))["trace_ids"]
    with runtime.db.transaction() as session:
        other = Tenant(name="other")
        session.add(other)
        session.flush()
        other_id = other.id

    # The same key from another tenant derives the same row ids: refused, nothing changes.
    with pytest.raises(FatalTaskError, match="belongs to another tenant"):
        deliver_batch(runtime, other_id, "batch-5", traces(2))
    rows = batch_rows(runtime, ids)
    assert [(r.tenant_id, r.status, r.attempts) for r in rows] == [
        (tenant, OpsTraceStatus.DELIVERED, 1)
    ] * 2
    assert len(endpoint.received) == 2


def test_without_an_endpoint_a_batch_is_only_stored(
    runtime: Runtime, endpoint: Endpoint, tenant: str
) -> None:
    runtime.settings = runtime.settings.model_copy(update={"ops_trace": OpsTraceSettings()})
    outcome = deliver_batch(runtime, tenant, "batch-6", traces(50))
    assert (outcome["stored"], outcome["delivered"]) == (50, 0)
    rows = batch_rows(runtime, outcome["trace_ids"])
    assert {(r.status, r.attempts) for r in rows} == {(OpsTraceStatus.PENDING, 0)}
    assert endpoint.received == []
