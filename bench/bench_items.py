"""Per-item paths: workflow node execution snapshots and ops traces stored many per transaction.

relay: ``store_node_executions`` (the ordering rule, tenant and run checks, one transaction per
batch) over ``ITEMS`` new snapshots and then the same number of updates (each node finishing);
the baseline writes the same rows with a plain bulk ``INSERT`` per batch and no rule at all.
Also relay with one snapshot per transaction, as one storage task per snapshot would commit.

The run store path: what a worker running a workflow does, end to end. ``QueuedRunStore`` is
given a running and then a finished snapshot of each of ``BENCH_STORE_NODES`` nodes, with a
checkpoint every ``SLICE`` nodes (each flushes the buffer); the outbox rows it wrote are then
applied with the storage task's body. Counted: snapshots saved, over the time to save them and
store them all. Baseline: the same snapshots one outbox row and one stored transaction each
(the path before batching), on at most 500 of them.

Ops traces: ``relay.ops_trace.deliver_batch`` with 500 traces per message, run in this process
through the task chain, no endpoint configured (the store path); baseline: the single-trace task
``relay.ops_trace.deliver``, one message per trace, on at most 500 traces.
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select

from bench.common import Row, bench_runtime, load_average
from relay.models import OutboxMessage, Tenant, WorkflowNodeExecution, utcnow
from relay.runtime import Runtime
from relay.tasks.workflow_run_store import SAVE_NODES, QueuedRunStore, snapshot
from relay.tasks.workflow_storage import store_node_executions, store_run
from relay.workflow import NodeExecutionRecord

ITEMS = int(os.environ.get("BENCH_ITEMS", "5000"))
BATCH = 500
STORE_NODES = int(os.environ.get("BENCH_STORE_NODES", "1000"))
SLICE = 50
TRACES_PER_MESSAGE = 500


def _node(tenant: str, run: str, i: int, **changes: Any) -> dict[str, Any]:
    return {
        "id": f"{run[:20]}-{i}",
        "tenant_id": tenant,
        "app_id": "bench-app",
        "workflow_run_id": run,
        "index": i,
        "node_id": f"node-{i}",
        "node_type": "code",
        "title": f"Node {i}",
        "inputs": {"x": i},
        "outputs": None,
        "status": "running",
        **changes,
    }


def run(rounds: int) -> list[Row]:
    with bench_runtime() as (_, runtime):
        db = runtime.db
        with db.transaction() as session:
            tenant = Tenant(name="bench-items")
            session.add(tenant)
            session.flush()
            tenant_id = tenant.id

        def new_run() -> str:
            run_id = str(uuid.uuid4())
            store_run(db, {
                "id": run_id, "tenant_id": tenant_id, "app_id": "bench-app",
                "triggered_from": "app-run", "version": "bench", "status": "running",
                "created_by_role": "account", "created_by": "bench",
            })  # fmt: skip
            return run_id

        def relay_batched() -> float:
            run_id = new_run()
            started = time.perf_counter()
            for start in range(0, ITEMS, BATCH):
                items = [_node(tenant_id, run_id, i) for i in range(start, start + BATCH)]
                store_node_executions(db, items, tenant_id)
            finished = utcnow().isoformat()
            for start in range(0, ITEMS, BATCH):
                items = [
                    _node(tenant_id, run_id, i, status="succeeded", finished_at=finished)
                    for i in range(start, start + BATCH)
                ]
                store_node_executions(db, items, tenant_id)
            return 2 * ITEMS / (time.perf_counter() - started)

        def relay_single() -> float:
            run_id = new_run()
            count = min(ITEMS, 1000)
            started = time.perf_counter()
            for i in range(count):
                store_node_executions(db, [_node(tenant_id, run_id, i)], tenant_id)
            return count / (time.perf_counter() - started)

        def plain_bulk() -> float:
            run_id = new_run()
            started = time.perf_counter()
            for start in range(0, 2 * ITEMS, BATCH):
                rows = [
                    {**_node(tenant_id, run_id, i), "created_at": utcnow()}
                    for i in range(start, start + BATCH)
                ]
                with db.transaction() as session:
                    session.execute(insert(WorkflowNodeExecution), rows)
            return 2 * ITEMS / (time.perf_counter() - started)

        def through_store() -> float:
            return _through_store(runtime, tenant_id, new_run(), STORE_NODES, batched=True)

        def one_by_one() -> float:
            return _through_store(
                runtime, tenant_id, new_run(), min(STORE_NODES, 250), batched=False
            )

        def traces_batched() -> float:
            return _traces(runtime, tenant_id, ITEMS, per_message=TRACES_PER_MESSAGE)

        def traces_single() -> float:
            return _traces(runtime, tenant_id, min(ITEMS, 500), per_message=1)

        results: dict[str, list[float]] = {
            "batched": [], "single": [], "plain": [], "store": [], "store_single": [],
            "traces": [], "traces_single": [],
        }  # fmt: skip
        order = ["batched", "single", "plain", "store", "store_single", "traces", "traces_single"]
        sides = {
            "batched": relay_batched, "single": relay_single, "plain": plain_bulk,
            "store": through_store, "store_single": one_by_one,
            "traces": traces_batched, "traces_single": traces_single,
        }  # fmt: skip
        for round_no in range(rounds):
            for name in order if round_no % 2 == 0 else reversed(order):
                results[name].append(sides[name]())
    med = statistics.median
    load = load_average()
    return [
        Row(f"workflow node storage, {BATCH} snapshots per transaction (items/s)",
            med(results["batched"]), med(results["plain"]), "/s", True,
            "insert then finish each node; baseline: bulk INSERT, no ordering rule; goal ≥ 5,000/s",
            load),
        Row("workflow node storage, one snapshot per transaction (items/s)",
            med(results["single"]), med(results["plain"]), "/s", True,
            "as one storage task per snapshot commits", load),
        Row(f"workflow node snapshots through the run store, checkpoint every {SLICE} nodes "
            "(snapshots/s)",
            med(results["store"]), med(results["store_single"]), "/s", True,
            "save → outbox batch → stored; baseline: one outbox row and one stored transaction "
            "per snapshot (the path before batching); goal ≥ 5,000/s", load),
        Row(f"ops traces stored, {TRACES_PER_MESSAGE} per message (traces/s)",
            med(results["traces"]), med(results["traces_single"]), "/s", True,
            "relay.ops_trace.deliver_batch through the task chain, no endpoint (stores only); "
            "baseline: relay.ops_trace.deliver, one trace per message; goal ≥ 5,000/s", load),
    ]  # fmt: skip


def _traces(runtime: Runtime, tenant_id: str, count: int, *, per_message: int) -> float:
    """Traces per second stored by the delivery tasks, run in this process through the task
    chain (``apply``) with the headers the outbox gives them, ``per_message`` per message."""
    batch = runtime.celery.tasks["relay.ops_trace.deliver_batch"]
    single = runtime.celery.tasks["relay.ops_trace.deliver"]
    tag = uuid.uuid4().hex[:8]
    started = time.perf_counter()
    for start in range(0, count, per_message):
        headers = {"idempotency_key": f"trace-{tag}-{start}", "tenant_id": tenant_id}
        items = [
            {"trace_type": "node", "payload": {"node": i, "latency": 0.01}}
            for i in range(start, min(start + per_message, count))
        ]
        if per_message == 1:
            args: list[Any] = [tenant_id, "bench-app", "node", items[0]["payload"]]
            single.apply(args=args, headers=headers, throw=True)
        else:
            batch.apply(args=[tenant_id, "bench-app", items], headers=headers, throw=True)
    return count / (time.perf_counter() - started)


def _through_store(
    runtime: Runtime, tenant_id: str, run_id: str, nodes: int, *, batched: bool
) -> float:
    """Snapshots per second from the engine's save to the stored rows (see the docstring)."""
    db = runtime.db
    store = QueuedRunStore(runtime, runtime.streams.control, 60, flush_interval=3600)
    created = datetime.now(UTC)
    single = "relay.workflow_storage.save_node_execution"
    started = time.perf_counter()
    for i in range(nodes):
        opened = NodeExecutionRecord(
            id=f"{run_id[:20]}-{i}", tenant_id=tenant_id, app_id="bench-app",
            workflow_run_id=run_id, index=i, node_execution_id=f"exec-{i}",
            node_id=f"node-{i}", node_type="code", title=f"Node {i}", created_at=created,
            inputs={"x": i},
        )  # fmt: skip
        done = replace(opened, status="succeeded", outputs={"y": i}, finished_at=utcnow())
        for record in (opened, done):
            if batched:
                store.save_node_execution(record)
            else:
                store._enqueue(single, snapshot(record), tenant_id)
        if batched and (i + 1) % SLICE == 0:
            store.save_checkpoint(run_id, None)
    store.close()
    query = select(OutboxMessage.task_name, OutboxMessage.args).where(
        OutboxMessage.task_name.in_([SAVE_NODES, single])
    )
    with db.session() as session:
        messages = [
            (name, args[0])
            for name, args in session.execute(query.order_by(OutboxMessage.created_at))
            # This run's rows only (the earlier rounds' are still there).
            if (args[0][0] if name == SAVE_NODES else args[0])["workflow_run_id"] == run_id
        ]
    for task_name, payload in messages:
        store_node_executions(db, payload if task_name == SAVE_NODES else [payload], tenant_id)
    return 2 * nodes / (time.perf_counter() - started)
