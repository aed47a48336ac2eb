"""Workflow run and node execution storage: upsert the snapshots the engine emits, by id.

The engine publishes a snapshot of a run (or of a node execution) each time it changes; these
tasks write them off the hot path. Several snapshots of one run can be in flight on different
workers, so they may arrive out of order, and a message may be delivered twice. The rule that
makes the outcome independent of arrival order: a snapshot is applied only if it is not *older*
than the stored row, where age is ordered by

1. status rank: ``running`` before any finished state (``succeeded``, ``failed``,
   ``partial-succeeded``, ``stopped``; for nodes ``succeeded``, ``failed``, ``exception``,
   ``retry``), so a finished or stopped run is never put back to running;
2. ``finished_at``: of two finished states the later one wins (a missing one counts as earliest);
3. for runs, ``total_steps``: of two running snapshots the one further along wins.

A payload that does not validate can never succeed (``FatalTaskError``). A node execution whose
run is not stored yet is retried (``RetryableTaskError``): the run's snapshot is on its way.
Every query is scoped by the payload's tenant, which must match the message's tenant header.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from pydantic import field_validator as validator
from sqlalchemy import select, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from relay import catalog
from relay.adapters.sql import Database
from relay.models import (
    CreatorRole,
    NodeExecutionStatus,
    Tenant,
    WorkflowNodeExecution,
    WorkflowRun,
    WorkflowRunStatus,
    WorkflowRunTriggeredFrom,
    utcnow,
)
from relay.retry import FatalTaskError, RetryableTaskError
from relay.tasks.base import RelayTask, relay_task

log = logging.getLogger(__name__)

Id = Annotated[str, StringConstraints(min_length=1, max_length=36)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=255)]

_EARLIEST = datetime.min.replace(tzinfo=UTC)
# A stored row keeps these from its first snapshot; a later snapshot cannot move it elsewhere.
_RUN_IDENTITY = frozenset(
    {"id", "tenant_id", "app_id", "created_at", "created_by", "created_by_role", "triggered_from"}
)
_NODE_IDENTITY = frozenset({"id", "tenant_id", "app_id", "workflow_run_id", "created_at"})


class _Snapshot(BaseModel):
    """What run and node execution snapshots share: identity, owner and timestamps."""

    # Unknown keys are ignored so that a newer engine adding a field does not dead-letter saves.
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: Id
    tenant_id: Id
    app_id: Id
    created_at: datetime | None = None
    finished_at: datetime | None = None

    @validator("created_at", "finished_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        # Timestamps without a zone are taken as UTC, which is what relay itself writes.
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class RunSnapshot(_Snapshot):
    """A workflow run as the engine reports it (``WorkflowRun`` columns)."""

    triggered_from: WorkflowRunTriggeredFrom
    version: Name
    graph: dict[str, Any] = Field(default_factory=dict)
    inputs: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, Any] | None = None
    status: WorkflowRunStatus
    error: str | None = None
    elapsed_time: float = Field(0.0, ge=0)
    total_tokens: int = Field(0, ge=0)
    total_steps: int = Field(0, ge=0)
    exceptions_count: int = Field(0, ge=0)
    created_by_role: CreatorRole
    created_by: Id


class NodeExecutionSnapshot(_Snapshot):
    """One node execution as the engine reports it (``WorkflowNodeExecution`` columns)."""

    workflow_run_id: Id
    index: int = Field(ge=0)
    node_execution_id: Annotated[str, StringConstraints(max_length=255)] | None = None
    node_id: Name
    node_type: Name
    title: Name
    inputs: dict[str, Any] | None = None
    process_data: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = None
    status: NodeExecutionStatus
    error: str | None = None
    elapsed_time: float = Field(0.0, ge=0)
    execution_metadata: dict[str, Any] | None = None


Version = tuple[int, datetime, int]


def run_version(status: str, finished_at: datetime | None, total_steps: int) -> Version:
    """The ordering key of a run snapshot: a snapshot is applied unless its key is smaller."""
    rank = 0 if status == WorkflowRunStatus.RUNNING else 1
    return (rank, finished_at or _EARLIEST, total_steps if rank == 0 else 0)


def node_version(status: str, finished_at: datetime | None) -> Version:
    """The ordering key of a node execution snapshot."""
    rank = 0 if status == NodeExecutionStatus.RUNNING else 1
    return (rank, finished_at or _EARLIEST, 0)


@relay_task(catalog.SAVE_WORKFLOW_RUN)
def save_run(self: RelayTask, run: dict[str, Any]) -> dict[str, str]:
    """Upsert a workflow run snapshot; returns ``{"id", "outcome"}`` with outcome ``inserted``,
    ``updated`` or ``ignored`` (older than the stored run), or ``{"skipped": "duplicate"}``."""
    snapshot = _parse(RunSnapshot, run)
    self.require_tenant(snapshot.tenant_id)
    with self.effect() as session:
        if session is None:
            return {"skipped": "duplicate"}
        outcome = _upsert_run(session, snapshot)
    _log(self.name, snapshot.id, outcome)
    return {"id": snapshot.id, "outcome": outcome}


@relay_task(catalog.SAVE_NODE_EXECUTION)
def save_node_execution(self: RelayTask, execution: dict[str, Any]) -> dict[str, str]:
    """Upsert a node execution snapshot; same outcomes as ``save_run``."""
    snapshot = _parse(NodeExecutionSnapshot, execution)
    self.require_tenant(snapshot.tenant_id)
    with self.effect() as session:
        if session is None:
            return {"skipped": "duplicate"}
        outcome = _upsert_node(session, snapshot)
    _log(self.name, snapshot.id, outcome)
    return {"id": snapshot.id, "outcome": outcome}


@relay_task(catalog.SAVE_NODE_EXECUTIONS)
def save_node_executions(
    self: RelayTask, executions: list[dict[str, Any]]
) -> dict[str, int] | dict[str, str]:
    """Upsert many node execution snapshots in one transaction (see ``store_node_executions``);
    returns the outcome counts, or ``{"skipped": "duplicate"}``."""
    if not isinstance(executions, list):
        raise FatalTaskError("executions must be a list of node execution snapshots")
    tenant_id = self.tenant_id
    snapshots = _parse_nodes(executions, tenant_id)
    with self.effect() as session:
        if session is None:
            return {"skipped": "duplicate"}
        return _upsert_nodes(session, self.runtime.db.is_sqlite, snapshots)


def store_run(db: Database, run: dict[str, Any]) -> str:
    """Upsert a run snapshot now, in a transaction of its own (the outcome, as ``save_run``).

    For the worker that ran the run: its final state is written at once, not queued.
    """
    snapshot = _parse(RunSnapshot, run)
    with db.transaction() as session:
        outcome = _upsert_run(session, snapshot)
    _log(catalog.SAVE_WORKFLOW_RUN.name, snapshot.id, outcome)
    return outcome


def store_node_executions(
    db: Database, executions: Sequence[Any], tenant_id: str | None = None
) -> dict[str, int]:
    """Upsert many node execution snapshots in one transaction; returns outcome counts.

    The same rule as ``save_node_execution``, applied in order, coalesced: the runs are read in
    one query, the stored rows locked in one, and the new rows inserted in one statement; only
    rows that exist (or that a concurrent save inserted first) are compared one by one. A batch
    naming another tenant than ``tenant_id``, or a run of another tenant or app, is refused
    whole (``FatalTaskError``); one whose run is not stored yet is retried whole.
    """
    snapshots = _parse_nodes(executions, tenant_id)
    with db.transaction() as session:
        return _upsert_nodes(session, db.is_sqlite, snapshots)


def _parse_nodes(executions: Sequence[Any], tenant_id: str | None) -> list[NodeExecutionSnapshot]:
    snapshots = [_parse(NodeExecutionSnapshot, e) for e in executions]
    if tenant_id is not None and any(s.tenant_id != tenant_id for s in snapshots):
        raise FatalTaskError("a node execution of the batch names another tenant")
    return snapshots


def _upsert_nodes(
    session: Session, is_sqlite: bool, snapshots: list[NodeExecutionSnapshot]
) -> dict[str, int]:
    outcomes: Counter[str] = Counter()
    if snapshots:
        run_ids = {s.workflow_run_id for s in snapshots}
        runs = {
            r.id: r for r in session.scalars(select(WorkflowRun).where(WorkflowRun.id.in_(run_ids)))
        }
        for snapshot in snapshots:
            run = runs.get(snapshot.workflow_run_id)
            if run is None:
                raise RetryableTaskError(
                    f"workflow run {snapshot.workflow_run_id} is not stored yet"
                )
            if (run.tenant_id, run.app_id) != (snapshot.tenant_id, snapshot.app_id):
                raise FatalTaskError(f"workflow run {run.id} belongs to another tenant or app")
        ids = {s.id for s in snapshots}
        rows = _locked_rows(session, ids)
        fresh: dict[str, dict[str, Any]] = {}
        for snapshot in snapshots:
            if snapshot.id not in rows and snapshot.id not in fresh:
                values = snapshot.model_dump()
                if values.get("created_at") is None:
                    values["created_at"] = utcnow()
                fresh[snapshot.id] = values
        inserted: set[str] = set()
        if fresh and is_sqlite:
            statement = (
                sqlite.insert(WorkflowNodeExecution)
                .on_conflict_do_nothing(index_elements=["id"])
                .returning(WorkflowNodeExecution.id)
            )
            inserted = set(session.scalars(statement, list(fresh.values())))
        elif fresh:
            inserted = _insert_from_json(session, list(fresh.values()))
        # Rows inserted concurrently by another save, and rows this batch inserted and then
        # snapshots again: compared like stored rows.
        counts = Counter(s.id for s in snapshots)
        again = {i for i in fresh if i not in inserted or counts[i] > 1}
        if again:
            rows.update(_locked_rows(session, again))
        first = set(inserted)
        for snapshot in snapshots:
            if snapshot.id in first:
                first.discard(snapshot.id)  # its first snapshot is the row just inserted
                outcomes["inserted"] += 1
                continue
            outcomes[_apply_node(rows[snapshot.id], snapshot)] += 1
    return dict(outcomes)


def _insert_from_json(session: Session, rows: list[dict[str, Any]]) -> set[str]:
    """PostgreSQL: insert ``rows`` (same keys each) from one JSON parameter; the ids inserted.

    A multi-row ``VALUES`` of a few hundred snapshots has thousands of parameters, and the
    driver parses such a statement anew each time (too long for its cache): most of a batch's
    time. ``json_populate_recordset`` turns one JSON array into rows of the table's own column
    types; the statement text is the same for every batch.
    """
    table = WorkflowNodeExecution.__table__
    quote = session.get_bind().dialect.identifier_preparer.quote
    columns = ", ".join(quote(table.c[name].name) for name in rows[0])
    name = quote(WorkflowNodeExecution.__tablename__)
    statement = text(
        f"INSERT INTO {name} ({columns}) SELECT {columns} "
        f"FROM json_populate_recordset(NULL::{name}, CAST(:rows AS json)) "
        "ON CONFLICT (id) DO NOTHING RETURNING id"
    )
    return set(session.scalars(statement, {"rows": json.dumps(rows, default=_json_value)}))


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


S = TypeVar("S", bound=_Snapshot)


def _parse(model: type[S], data: Any) -> S:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise FatalTaskError(f"invalid {model.__name__}: {exc}") from exc


def _upsert_run(session: Session, snapshot: RunSnapshot) -> str:
    row = _locked(session, WorkflowRun, snapshot.id)
    if row is None:
        _require_tenant_row(session, snapshot.tenant_id)
        row = _insert(session, WorkflowRun, snapshot)
        if row is None:
            return "inserted"
    _same_owner(row, snapshot)
    stored = run_version(row.status, row.finished_at, row.total_steps)
    incoming = run_version(snapshot.status, snapshot.finished_at, snapshot.total_steps)
    if incoming < stored:
        return "ignored"
    _assign(row, snapshot, _RUN_IDENTITY)
    return "updated"


def _upsert_node(session: Session, snapshot: NodeExecutionSnapshot) -> str:
    run = session.get(WorkflowRun, snapshot.workflow_run_id)
    if run is None:
        # Snapshots travel on parallel workers: the run's first save may simply not be done.
        raise RetryableTaskError(f"workflow run {snapshot.workflow_run_id} is not stored yet")
    if run.tenant_id != snapshot.tenant_id or run.app_id != snapshot.app_id:
        raise FatalTaskError(f"workflow run {run.id} belongs to another tenant or app")
    row = _locked(session, WorkflowNodeExecution, snapshot.id)
    if row is None:
        row = _insert(session, WorkflowNodeExecution, snapshot)
        if row is None:
            return "inserted"
    return _apply_node(row, snapshot)


def _apply_node(row: WorkflowNodeExecution, snapshot: NodeExecutionSnapshot) -> str:
    """Apply ``snapshot`` to the stored (locked) ``row`` unless it is older."""
    _same_owner(row, snapshot)
    if row.workflow_run_id != snapshot.workflow_run_id:
        raise FatalTaskError(f"node execution {row.id} belongs to another run")
    stored = node_version(row.status, row.finished_at)
    if node_version(snapshot.status, snapshot.finished_at) < stored:
        return "ignored"
    _assign(row, snapshot, _NODE_IDENTITY)
    return "updated"


def _locked_rows(session: Session, ids: set[str]) -> dict[str, WorkflowNodeExecution]:
    """The stored node executions among ``ids``, locked until commit, in one query."""
    query = select(WorkflowNodeExecution).where(WorkflowNodeExecution.id.in_(ids))
    return {row.id: row for row in session.scalars(query.with_for_update())}


M = TypeVar("M", WorkflowRun, WorkflowNodeExecution)


def _locked(session: Session, model: type[M], row_id: str) -> M | None:
    """The stored row, locked until commit (PostgreSQL; SQLite serialises writers anyway), so
    that two workers comparing versions of one row take turns."""
    return session.get(model, row_id, with_for_update=True)


def _insert(session: Session, model: type[M], snapshot: _Snapshot) -> M | None:
    """Insert the snapshot; None when inserted, else the row a concurrent save inserted first."""
    values = snapshot.model_dump()
    if values.get("created_at") is None:
        values["created_at"] = utcnow()
    try:
        with session.begin_nested():
            session.add(model(**values))
    except IntegrityError:
        row = _locked(session, model, snapshot.id)
        if row is None:
            raise
        return row
    return None


def _require_tenant_row(session: Session, tenant_id: str) -> None:
    if session.get(Tenant, tenant_id) is None:
        raise FatalTaskError(f"unknown tenant {tenant_id}")


def _same_owner(row: WorkflowRun | WorkflowNodeExecution, snapshot: _Snapshot) -> None:
    if (row.tenant_id, row.app_id) != (snapshot.tenant_id, snapshot.app_id):
        # Same id, another tenant (or app): never touch it, and retrying cannot help.
        raise FatalTaskError(f"{type(row).__name__} {row.id} belongs to another tenant or app")


def _assign(
    row: WorkflowRun | WorkflowNodeExecution, snapshot: _Snapshot, keep: frozenset[str]
) -> None:
    """Copy the fields the snapshot carries (not the defaults of fields it left out)."""
    for name, value in snapshot.model_dump(exclude_unset=True).items():
        if name not in keep:
            setattr(row, name, value)


def _log(task: str, row_id: str, outcome: str) -> None:
    log.debug(
        "workflow snapshot stored",
        extra={"action": "workflow_storage." + outcome, "task": task, "id": row_id},
    )
