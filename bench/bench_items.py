"""Per-item paths: workflow node execution snapshots stored many per transaction.

relay: ``store_node_executions`` (the ordering rule, tenant and run checks, one transaction per
batch) over ``ITEMS`` new snapshots and then the same number of updates (each node finishing);
the baseline writes the same rows with a plain bulk ``INSERT`` per batch and no rule at all.
Also relay with one snapshot per transaction, as one storage task per snapshot would commit.
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from typing import Any

from sqlalchemy import insert

from bench.common import Row, bench_runtime, load_average
from relay.models import Tenant, WorkflowNodeExecution, utcnow
from relay.tasks.workflow_storage import store_node_executions, store_run

ITEMS = int(os.environ.get("BENCH_ITEMS", "5000"))
BATCH = 500


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

        results: dict[str, list[float]] = {"batched": [], "single": [], "plain": []}
        order = ["batched", "single", "plain"]
        sides = {"batched": relay_batched, "single": relay_single, "plain": plain_bulk}
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
    ]  # fmt: skip
