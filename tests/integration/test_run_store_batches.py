"""The workers' run store sends node snapshots in batches: buffered, flushed before checkpoints.

Outbox rows are read back from the database (what a crash would leave behind), and applied
with the storage task body, twice where delivery twice is the point.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from relay.models import OutboxMessage, WorkflowNodeExecution
from relay.runtime import Runtime
from relay.tasks.workflow_run import WorkflowRunner
from relay.tasks.workflow_run_store import NODE_BATCH, SAVE_NODES, QueuedRunStore
from relay.tasks.workflow_storage import store_node_executions, store_run
from relay.workflow import FixedTimeSlice, NodeExecutionRecord, TimeSliceLayer
from tests.integration.streaming.test_run_attempts import _start
from tests.integration.test_workflow_storage_task import new_tenant, run_payload

SAVE_NODE = "relay.workflow_storage.save_node_execution"


def rows(runtime: Runtime) -> list[OutboxMessage]:
    with runtime.db.session() as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.created_at)))


def node_batches(runtime: Runtime) -> list[list[dict[str, Any]]]:
    return [row.args[0] for row in rows(runtime) if row.task_name == SAVE_NODES]


def record(tenant: str, node: str, status: str = "running", **changes: Any) -> NodeExecutionRecord:
    return NodeExecutionRecord(
        id=node,
        tenant_id=tenant,
        app_id="app-1",
        workflow_run_id="run-1",
        index=1,
        node_execution_id=node,
        node_id="llm",
        node_type="llm",
        title="LLM",
        created_at=datetime(2026, 12, 1, tzinfo=UTC),
        status=status,
        **changes,
    )


def store(runtime: Runtime) -> QueuedRunStore:
    # No timed flush during the test: what reaches the outbox is what the store flushed itself.
    return QueuedRunStore(runtime, runtime.streams.control, 60, flush_interval=3600)


def test_snapshots_wait_in_the_buffer_and_a_checkpoint_flushes_them_first(
    runtime: Runtime,
) -> None:
    tenant = new_tenant(runtime)
    runs = store(runtime)
    runs.save_node_execution(record(tenant, "n-1"))
    runs.save_node_execution(record(tenant, "n-2"))
    finished = datetime(2026, 12, 1, 0, 0, 5, tzinfo=UTC)
    runs.save_node_execution(record(tenant, "n-1", "succeeded", finished_at=finished))
    assert node_batches(runtime) == [], "nothing sent per snapshot"

    runs.save_checkpoint("run-1", None)
    [batch] = node_batches(runtime)
    # One message; the node's later snapshot replaced its earlier one in the buffer.
    assert [(s["id"], s["status"]) for s in batch] == [("n-1", "succeeded"), ("n-2", "running")]
    assert not any(row.task_name == SAVE_NODE for row in rows(runtime))
    runs.close()
    assert len(node_batches(runtime)) == 1, "closing with an empty buffer sends nothing"


def test_a_full_buffer_is_flushed_without_waiting(runtime: Runtime) -> None:
    tenant = new_tenant(runtime)
    runs = store(runtime)
    for i in range(NODE_BATCH + 5):
        runs.save_node_execution(record(tenant, f"n-{i}"))
    assert [len(b) for b in node_batches(runtime)] == [NODE_BATCH]
    runs.close()  # the attempt's end flushes the rest
    assert [len(b) for b in node_batches(runtime)] == [NODE_BATCH, 5]


def test_a_batch_delivered_twice_stores_each_node_once(runtime: Runtime) -> None:
    tenant = new_tenant(runtime)
    store_run(runtime.db, run_payload(tenant, app_id="app-1"))
    runs = store(runtime)
    for i in range(3):
        runs.save_node_execution(record(tenant, f"n-{i}"))
    runs.close()
    [batch] = node_batches(runtime)
    first = store_node_executions(runtime.db, batch, tenant)
    again = store_node_executions(runtime.db, batch, tenant)
    assert first == {"inserted": 3}
    assert again == {"updated": 3}
    with runtime.db.session() as session:
        stored = session.scalars(select(WorkflowNodeExecution.id).order_by("id")).all()
    assert stored == ["n-0", "n-1", "n-2"]


def test_a_run_sends_its_node_snapshots_in_batches_and_loses_none(runtime: Runtime) -> None:
    runtime.settings = runtime.settings.model_copy(
        update={"workflow": runtime.settings.workflow.model_copy(update={"llm_token_delay": 0})}
    )
    run_id, job = _start(runtime)
    slicer = TimeSliceLayer(FixedTimeSlice(0))  # a checkpoint at every node boundary
    outcomes: list[str] = []
    while not outcomes or outcomes[-1] == "paused":
        outcomes.append(WorkflowRunner(runtime, run_id, job, [slicer]).execute())
    assert outcomes[-1] == "finished"

    batches = node_batches(runtime)
    assert batches, "node snapshots travelled as save_node_executions"
    assert not any(row.task_name == SAVE_NODE for row in rows(runtime))
    assert len(batches) <= len(outcomes), "at most one message per attempt (checkpoint)"
    # Applied, they give every node of the run in its final state.
    for batch in batches:
        store_node_executions(runtime.db, batch, job.tenant_id)
    with runtime.db.session() as session:
        nodes = session.scalars(
            select(WorkflowNodeExecution).where(WorkflowNodeExecution.workflow_run_id == run_id)
        ).all()
    sent = {s["id"] for batch in batches for s in batch}
    assert {n.id for n in nodes} == sent
    assert len(nodes) >= 3
    assert {n.status for n in nodes} == {"succeeded"}
