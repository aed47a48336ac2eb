"""The ``WorkflowRunStore`` of runs in workers: snapshots travel through the storage tasks.

Why through ``relay.workflow_storage.*`` rather than writing rows from the run task: those tasks
own the upsert rule that makes out-of-order and duplicate snapshots harmless (a finished run is
never put back to running), retry a database hiccup without failing the run, and dead-letter
what can never be stored; the run task keeps streaming while they write. Each run snapshot is
an outbox row (crash-safe, published after its commit).

Node execution snapshots are coalesced: they are buffered (a later snapshot of a node replaces
its earlier one) and enqueued as ``relay.workflow_storage.save_node_executions`` messages of up
to ``NODE_BATCH`` snapshots, one outbox row per batch. The buffer is flushed when it is full,
every ``NODE_FLUSH_INTERVAL`` seconds by a ``Batcher``, and always before a checkpoint or a run
snapshot is written and when the attempt ends (``close()``). So what a checkpoint covers is in
the outbox before the checkpoint exists: a worker that dies loses at most the snapshots of
nodes after its last checkpoint, and the attempt that resumes from that checkpoint runs those
nodes again and saves them anew. A batch delivered twice is harmless (snapshots apply by id,
never going back in time).

One exception keeps the API consistent: the *final* run snapshot is applied in this process,
through the same task body, before the run's terminal event is published, so a client that
has seen the end of the stream never reads a run that still says ``running``. Checkpoints of
paused runs live in Redis beside the run's stream.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import fields, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from relay import catalog
from relay.background import Background, Batcher
from relay.events.outbox import Enqueue
from relay.models import WorkflowNodeExecution, WorkflowRun, utcnow
from relay.streaming import RunControl
from relay.tasks.workflow_storage import store_run
from relay.workflow import (
    NodeExecutionRecord,
    RunCheckpoint,
    WorkflowRunRecord,
)
from relay.workflow.run_store import RUN_RUNNING, RUN_STOPPED

if TYPE_CHECKING:
    from relay.runtime import Runtime

log = logging.getLogger(__name__)

SAVE_RUN = catalog.SAVE_WORKFLOW_RUN.name
SAVE_NODES = catalog.SAVE_NODE_EXECUTIONS.name
_ID_LENGTH = 36
# Snapshots per save_node_executions message, and the longest a snapshot waits in the buffer.
NODE_BATCH = 100
NODE_FLUSH_INTERVAL = 0.5


def snapshot(record: WorkflowRunRecord | NodeExecutionRecord) -> dict[str, Any]:
    """A record as the storage tasks take it (JSON)."""
    # A shallow dict: the JSON round trip copies the nested values anyway (``asdict`` would
    # deep-copy them first, twice the cost of the rest).
    shallow = {f.name: getattr(record, f.name) for f in fields(record)}
    data: dict[str, Any] = json.loads(json.dumps(shallow, default=_json_default))
    if isinstance(record, NodeExecutionRecord):
        if len(record.id) > _ID_LENGTH:
            # Retried attempts get ids like "<uuid>:retry-1": stored under a stable uuid.
            data["id"] = str(uuid.uuid5(uuid.NAMESPACE_OID, record.id))
        data["title"] = record.title or record.node_id
    return data


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


class QueuedRunStore:
    """:class:`relay.workflow.WorkflowRunStore` for the run task (see the module docstring)."""

    def __init__(
        self,
        runtime: Runtime,
        control: RunControl,
        checkpoint_ttl: int,
        *,
        flush_interval: float = NODE_FLUSH_INTERVAL,
    ) -> None:
        self.runtime = runtime
        self.control = control
        self.checkpoint_ttl = checkpoint_ttl
        # Stored node id -> (tenant, snapshot). Its own ``Background``: the thread lives as
        # long as the attempt (``close()``), not as long as the runtime.
        self._nodes: Batcher[str, tuple[str, dict[str, Any]]] = Batcher(
            "workflow_node_snapshots",
            self._enqueue_nodes,
            interval=flush_interval,
            background=Background(),
        )

    def save_run(self, record: WorkflowRunRecord) -> None:
        self.flush()
        payload = snapshot(record)
        if record.status != RUN_RUNNING:
            try:
                self._apply_now(payload)
                return
            except Exception:
                log.exception(
                    "final run snapshot not applied in process; queued instead",
                    extra={"action": "workflow_run.final_save_queued", "run_id": record.id},
                )
        self._enqueue(SAVE_RUN, payload, record.tenant_id)

    def save_node_execution(self, record: NodeExecutionRecord) -> None:
        payload = snapshot(record)
        self._nodes.add(payload["id"], (record.tenant_id, payload))
        if self._nodes.pending() >= NODE_BATCH:
            self.flush()

    def flush(self) -> None:
        """Enqueue the buffered node snapshots now (a failed enqueue keeps them buffered)."""
        if self._nodes.pending():
            self._nodes.flush()

    def close(self) -> None:
        """Flush what is buffered and stop the flushing thread (the attempt is over)."""
        self._nodes.stop()

    def get_run(self, run_id: str) -> WorkflowRunRecord | None:
        with self.runtime.db.session() as session:
            row = session.get(WorkflowRun, run_id)
            if row is None:
                return None
            return WorkflowRunRecord(
                id=row.id,
                tenant_id=row.tenant_id,
                app_id=row.app_id,
                workflow_id="",
                triggered_from=row.triggered_from,
                version=row.version,
                graph=row.graph,
                inputs=row.inputs,
                created_by_role=row.created_by_role,
                created_by=row.created_by,
                created_at=row.created_at,
                status=row.status,
                outputs=row.outputs,
                error=row.error,
                elapsed_time=row.elapsed_time,
                total_tokens=row.total_tokens,
                total_steps=row.total_steps,
                exceptions_count=row.exceptions_count,
                finished_at=row.finished_at,
            )

    def node_executions(self, run_id: str) -> list[NodeExecutionRecord]:
        with self.runtime.db.session() as session:
            rows = session.scalars(
                select(WorkflowNodeExecution)
                .where(WorkflowNodeExecution.workflow_run_id == run_id)
                .order_by(WorkflowNodeExecution.index, WorkflowNodeExecution.created_at)
            )
            return [
                NodeExecutionRecord(
                    id=row.id,
                    tenant_id=row.tenant_id,
                    app_id=row.app_id,
                    workflow_run_id=row.workflow_run_id,
                    index=row.index,
                    node_execution_id=row.node_execution_id or row.id,
                    node_id=row.node_id,
                    node_type=row.node_type,
                    title=row.title,
                    created_at=row.created_at,
                    status=row.status,
                    inputs=row.inputs,
                    process_data=row.process_data,
                    outputs=row.outputs,
                    error=row.error,
                    elapsed_time=row.elapsed_time,
                    execution_metadata=dict(row.execution_metadata or {}),
                    finished_at=row.finished_at,
                )
                for row in rows
            ]

    def save_checkpoint(self, run_id: str, checkpoint: RunCheckpoint | None) -> None:
        self.flush()  # what the checkpoint covers is in the outbox before it exists
        data = None if checkpoint is None else checkpoint.model_dump_json()
        self.control.save_checkpoint(run_id, data, self.checkpoint_ttl)

    def load_checkpoint(self, run_id: str) -> RunCheckpoint | None:
        data = self.control.load_checkpoint(run_id)
        return None if data is None else RunCheckpoint.model_validate_json(data)

    def mark_stopped(self, record: WorkflowRunRecord, reason: str) -> None:
        """Record a run stopped between slices (its last slice ended paused)."""
        self.save_run(replace(record, status=RUN_STOPPED, error=reason, finished_at=utcnow()))

    def _apply_now(self, payload: dict[str, Any]) -> None:
        store_run(self.runtime.db, payload)

    def _enqueue(self, task: str, payload: dict[str, Any], tenant_id: str) -> None:
        with self.runtime.db.transaction() as session:
            self.runtime.outbox.enqueue(session, task, args=[payload], tenant_id=tenant_id)

    def _enqueue_nodes(self, pending: dict[str, tuple[str, dict[str, Any]]]) -> None:
        by_tenant: dict[str, list[dict[str, Any]]] = {}
        for tenant_id, payload in pending.values():
            by_tenant.setdefault(tenant_id, []).append(payload)
        tasks = [
            Enqueue(SAVE_NODES, args=[payloads[i : i + NODE_BATCH]], tenant_id=tenant_id)
            for tenant_id, payloads in by_tenant.items()
            for i in range(0, len(payloads), NODE_BATCH)
        ]
        with self.runtime.db.transaction() as session:
            self.runtime.outbox.enqueue_many(session, tasks)
