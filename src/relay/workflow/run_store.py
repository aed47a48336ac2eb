"""Where the persistence layer writes runs and node executions: a protocol and an in-memory store.

Records mirror ``relay.models.workflow_run`` (same fields and status values) without importing
SQLAlchemy; the Celery-backed store of the task runtime maps them onto those models.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from relay.workflow.checkpoint import RunCheckpoint

# Status values as in relay.models.workflow_run (and Dify).
RUN_RUNNING = "running"
RUN_SUCCEEDED = "succeeded"
RUN_FAILED = "failed"
RUN_PARTIAL_SUCCEEDED = "partial-succeeded"
RUN_STOPPED = "stopped"
NODE_RUNNING = "running"
NODE_SUCCEEDED = "succeeded"
NODE_FAILED = "failed"
NODE_EXCEPTION = "exception"
NODE_RETRY = "retry"


@dataclass(frozen=True)
class WorkflowRunRecord:
    """One run of a workflow."""

    id: str
    tenant_id: str
    app_id: str
    workflow_id: str
    triggered_from: str
    version: str
    graph: dict[str, Any]
    inputs: dict[str, Any]
    created_by_role: str
    created_by: str
    created_at: datetime
    status: str = RUN_RUNNING
    outputs: dict[str, Any] | None = None
    error: str | None = None
    elapsed_time: float = 0.0
    total_tokens: int = 0
    total_steps: int = 0
    exceptions_count: int = 0
    finished_at: datetime | None = None


@dataclass(frozen=True)
class NodeExecutionRecord:
    """One execution of one node (a retried attempt gets its own record with status retry)."""

    id: str
    tenant_id: str
    app_id: str
    workflow_run_id: str
    index: int
    node_execution_id: str
    node_id: str
    node_type: str
    title: str
    created_at: datetime
    status: str = NODE_RUNNING
    inputs: dict[str, Any] | None = None
    process_data: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = None
    error: str | None = None
    elapsed_time: float = 0.0
    execution_metadata: dict[str, Any] = field(default_factory=dict)
    finished_at: datetime | None = None


class WorkflowRunStore(Protocol):
    """Persists runs, node executions and checkpoints (insert or replace by id)."""

    def save_run(self, record: WorkflowRunRecord) -> None:
        """Insert or update a run."""
        ...

    def get_run(self, run_id: str) -> WorkflowRunRecord | None:
        """A run by id."""
        ...

    def save_node_execution(self, record: NodeExecutionRecord) -> None:
        """Insert or update a node execution."""
        ...

    def node_executions(self, run_id: str) -> list[NodeExecutionRecord]:
        """A run's node executions ordered by index."""
        ...

    def save_checkpoint(self, run_id: str, checkpoint: RunCheckpoint | None) -> None:
        """Keep (or, with None, drop) the checkpoint a paused run resumes from."""
        ...

    def load_checkpoint(self, run_id: str) -> RunCheckpoint | None:
        """The checkpoint of a paused run."""
        ...


class InMemoryWorkflowRunStore:
    """:class:`WorkflowRunStore` in dicts; thread-safe, for tests, demos and single processes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, WorkflowRunRecord] = {}
        self._nodes: dict[str, NodeExecutionRecord] = {}
        self._checkpoints: dict[str, RunCheckpoint] = {}

    def save_run(self, record: WorkflowRunRecord) -> None:
        with self._lock:
            self._runs[record.id] = replace(record, outputs=copy.deepcopy(record.outputs))

    def get_run(self, run_id: str) -> WorkflowRunRecord | None:
        with self._lock:
            return self._runs.get(run_id)

    def save_node_execution(self, record: NodeExecutionRecord) -> None:
        with self._lock:
            self._nodes[record.id] = record

    def node_executions(self, run_id: str) -> list[NodeExecutionRecord]:
        with self._lock:
            found = [r for r in self._nodes.values() if r.workflow_run_id == run_id]
        return sorted(found, key=lambda r: (r.index, r.created_at))

    def save_checkpoint(self, run_id: str, checkpoint: RunCheckpoint | None) -> None:
        with self._lock:
            if checkpoint is None:
                self._checkpoints.pop(run_id, None)
            else:
                self._checkpoints[run_id] = checkpoint

    def load_checkpoint(self, run_id: str) -> RunCheckpoint | None:
        with self._lock:
            return self._checkpoints.get(run_id)
