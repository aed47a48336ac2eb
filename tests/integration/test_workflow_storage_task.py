"""Workflow run and node execution storage: upsert by id, and the rule that keeps finished runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from relay.models import Tenant, WorkflowNodeExecution, WorkflowRun
from relay.retry import FatalTaskError, RetryableTaskError
from relay.runtime import Runtime

SAVE_RUN = "relay.workflow_storage.save_run"
SAVE_NODE = "relay.workflow_storage.save_node_execution"
T0 = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


def new_tenant(runtime: Runtime) -> str:
    with runtime.db.transaction() as session:
        row = Tenant(name="acme")
        session.add(row)
        session.flush()
        return row.id


@pytest.fixture
def tenant(runtime: Runtime) -> str:
    return new_tenant(runtime)


def run_payload(tenant: str, **changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": "run-1",
        "tenant_id": tenant,
        "app_id": "app-1",
        "triggered_from": "app-run",
        "version": "2026-11-28",
        "graph": {"nodes": [{"id": "start"}], "edges": []},
        "inputs": {"q": "hi"},
        "status": "running",
        "created_by_role": "account",
        "created_by": "acct-1",
        "created_at": T0.isoformat(),
    }
    payload.update(changes)
    return payload


def node_payload(tenant: str, **changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": "node-exec-1",
        "tenant_id": tenant,
        "app_id": "app-1",
        "workflow_run_id": "run-1",
        "index": 1,
        "node_id": "llm",
        "node_type": "llm",
        "title": "LLM",
        "status": "running",
        "created_at": T0.isoformat(),
    }
    payload.update(changes)
    return payload


def call(runtime: Runtime, task: str, payload: Any, tenant: str | None = None) -> Any:
    """Run the task body in this process, raising what it raises."""
    headers = {"tenant_id": tenant} if tenant else None
    return runtime.celery.tasks[task].apply(args=[payload], headers=headers, throw=True).get()


def stored_run(runtime: Runtime, run_id: str = "run-1") -> WorkflowRun:
    with runtime.db.session() as session:
        row = session.get(WorkflowRun, run_id)
        assert row is not None
        return row


def stored_node(runtime: Runtime, node_id: str = "node-exec-1") -> WorkflowNodeExecution:
    with runtime.db.session() as session:
        row = session.get(WorkflowNodeExecution, node_id)
        assert row is not None
        return row


def finished(tenant: str, status: str, at: datetime, **changes: Any) -> dict[str, Any]:
    return run_payload(tenant, status=status, finished_at=at.isoformat(), **changes)


def test_runs_and_nodes_are_upserted_through_a_worker(
    runtime: Runtime, worker: Any, tenant: str
) -> None:
    def send(task: str, payload: dict[str, Any], key: str) -> Any:
        headers = {"idempotency_key": key, "tenant_id": tenant}
        return runtime.celery.send_task(task, args=[payload], headers=headers).get(timeout=30)

    assert send(SAVE_RUN, run_payload(tenant, total_steps=1), "k1") == {
        "id": "run-1",
        "outcome": "inserted",
    }
    assert send(SAVE_NODE, node_payload(tenant), "k2")["outcome"] == "inserted"
    done = node_payload(
        tenant, status="succeeded", outputs={"text": "hello"}, finished_at=T0.isoformat()
    )
    assert send(SAVE_NODE, done, "k3")["outcome"] == "updated"
    end = finished(tenant, "succeeded", T0 + timedelta(seconds=3), outputs={"answer": "hello"})
    assert send(SAVE_RUN, end, "k4")["outcome"] == "updated"
    assert send(SAVE_RUN, end, "k4") == {"skipped": "duplicate"}

    run = stored_run(runtime)
    assert run.status == "succeeded"
    assert run.outputs == {"answer": "hello"}
    assert run.finished_at == T0 + timedelta(seconds=3)
    assert run.created_at == T0
    assert run.graph == {"nodes": [{"id": "start"}], "edges": []}
    node = stored_node(runtime)
    assert (node.status, node.outputs, node.workflow_run_id) == (
        "succeeded",
        {"text": "hello"},
        "run-1",
    )


@pytest.mark.parametrize("final", ["succeeded", "failed", "partial-succeeded", "stopped"])
def test_a_finished_run_is_never_put_back_to_running(
    runtime: Runtime, tenant: str, final: str
) -> None:
    call(runtime, SAVE_RUN, run_payload(tenant))
    call(runtime, SAVE_RUN, finished(tenant, final, T0 + timedelta(seconds=5), error="x"))

    late = run_payload(tenant, status="running", total_steps=99)
    assert call(runtime, SAVE_RUN, late)["outcome"] == "ignored"

    run = stored_run(runtime)
    assert run.status == final
    assert run.total_steps == 0
    assert run.finished_at == T0 + timedelta(seconds=5)


def test_an_older_finished_state_does_not_overwrite_a_newer_one(
    runtime: Runtime, tenant: str
) -> None:
    call(runtime, SAVE_RUN, finished(tenant, "stopped", T0 + timedelta(seconds=10)))

    older = finished(tenant, "succeeded", T0 + timedelta(seconds=4))
    assert call(runtime, SAVE_RUN, older)["outcome"] == "ignored"
    assert stored_run(runtime).status == "stopped"

    newer = finished(tenant, "failed", T0 + timedelta(seconds=12), error="boom")
    assert call(runtime, SAVE_RUN, newer)["outcome"] == "updated"
    run = stored_run(runtime)
    assert (run.status, run.error) == ("failed", "boom")


def test_running_snapshots_only_move_forward(runtime: Runtime, tenant: str) -> None:
    call(runtime, SAVE_RUN, run_payload(tenant, total_steps=5, elapsed_time=2.5))

    stale = run_payload(tenant, total_steps=3, elapsed_time=1.0)
    assert call(runtime, SAVE_RUN, stale)["outcome"] == "ignored"
    ahead = run_payload(tenant, total_steps=6, elapsed_time=3.0)
    assert call(runtime, SAVE_RUN, ahead)["outcome"] == "updated"

    run = stored_run(runtime)
    assert (run.total_steps, run.elapsed_time) == (6, 3.0)


def test_a_finished_node_execution_is_not_reopened(runtime: Runtime, tenant: str) -> None:
    call(runtime, SAVE_RUN, run_payload(tenant))
    done = node_payload(tenant, status="exception", error="bad", finished_at=T0.isoformat())
    call(runtime, SAVE_NODE, done)

    assert call(runtime, SAVE_NODE, node_payload(tenant))["outcome"] == "ignored"
    assert stored_node(runtime).status == "exception"


def test_a_node_execution_before_its_run_is_retried(runtime: Runtime, tenant: str) -> None:
    with pytest.raises(RetryableTaskError, match="not stored yet"):
        call(runtime, SAVE_NODE, node_payload(tenant))

    call(runtime, SAVE_RUN, run_payload(tenant))
    assert call(runtime, SAVE_NODE, node_payload(tenant))["outcome"] == "inserted"


@pytest.mark.parametrize(
    "bad",
    [
        {"status": "exploded"},
        {"id": None},
        {"id": "x" * 37},
        {"total_steps": -1},
        {"created_at": "yesterday"},
        {"triggered_from": "cron"},
    ],
)
def test_a_bad_run_payload_is_fatal(runtime: Runtime, tenant: str, bad: dict[str, Any]) -> None:
    with pytest.raises(FatalTaskError, match="invalid RunSnapshot"):
        call(runtime, SAVE_RUN, run_payload(tenant, **bad))


def test_payloads_that_are_not_objects_or_miss_fields_are_fatal(
    runtime: Runtime, tenant: str
) -> None:
    with pytest.raises(FatalTaskError):
        call(runtime, SAVE_RUN, ["not", "a", "dict"])
    payload = run_payload(tenant)
    del payload["app_id"]
    with pytest.raises(FatalTaskError, match="app_id"):
        call(runtime, SAVE_RUN, payload)
    with pytest.raises(FatalTaskError, match="node_id"):
        call(runtime, SAVE_NODE, {k: v for k, v in node_payload(tenant).items() if k != "node_id"})


def test_another_tenants_run_is_never_touched(runtime: Runtime, tenant: str) -> None:
    call(runtime, SAVE_RUN, run_payload(tenant))
    intruder = new_tenant(runtime)

    with pytest.raises(FatalTaskError, match="another tenant"):
        call(runtime, SAVE_RUN, finished(intruder, "succeeded", T0), tenant=intruder)
    with pytest.raises(FatalTaskError, match="another tenant"):
        call(runtime, SAVE_NODE, node_payload(intruder), tenant=intruder)

    assert stored_run(runtime).status == "running"
    assert stored_run(runtime).tenant_id == tenant


def test_an_unknown_tenant_is_fatal(runtime: Runtime) -> None:
    with pytest.raises(FatalTaskError, match="unknown tenant"):
        call(runtime, SAVE_RUN, run_payload("no-such-tenant"))


def test_the_payload_tenant_must_match_the_message(runtime: Runtime, tenant: str) -> None:
    other = new_tenant(runtime)
    with pytest.raises(Exception, match="message is for"):
        call(runtime, SAVE_RUN, run_payload(tenant), tenant=other)
    with runtime.db.session() as session:
        assert session.get(WorkflowRun, "run-1") is None
