"""``relay.app_deletion.remove_app``: remove an app and everything recorded under it, in batches.

An app's history (messages, conversations, workflow runs and their node executions, traces) can
be millions of rows, too many for one transaction: it would hold locks for minutes and bloat the
write-ahead log. So each batch of at most ``batch_size`` rows is its own short transaction, and
the task is idempotent by construction instead of through ``effect()``: every batch deletes
whatever is still there, so a second run, or a retry after a crash half-way, simply finishes the
job. Children go before parents (messages before their conversations, node executions before
their runs), so an interruption never leaves a row whose parent is gone, and the app row goes
last, so an app still listed is never one whose data is half gone without a task to finish it.

Every statement is scoped by ``tenant_id``: the task can only ever remove the rows of the tenant
the message was enqueued for, even when handed another tenant's app id.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import ColumnElement, CursorResult, delete, select

from relay import catalog
from relay.adapters.sql import Database
from relay.models import (
    App,
    AppDatasetJoin,
    Conversation,
    InstalledApp,
    Message,
    OpsTrace,
    Site,
    WorkflowNodeExecution,
    WorkflowRun,
)
from relay.retry import FatalTaskError
from relay.tasks.base import RelayTask, relay_task

log = logging.getLogger(__name__)

BATCH_SIZE = 500


@relay_task(catalog.REMOVE_APP)
def remove_app(
    self: RelayTask, tenant_id: str, app_id: str, batch_size: int = BATCH_SIZE
) -> dict[str, int]:
    """Delete the app's rows batch by batch, then the app; returns the rows deleted per table."""
    self.require_tenant(tenant_id)
    if batch_size < 1:
        raise FatalTaskError(f"batch_size must be at least 1, not {batch_size}")
    remover = AppRemover(self.runtime.db, tenant_id, app_id, batch_size)
    counts = remover.run()
    log.info(
        "app removed",
        extra={"action": "app.removed", "tenant_id": tenant_id, "app_id": app_id, **counts},
    )
    return counts


class AppRemover:
    """The deletion of one app's rows, one short transaction per batch."""

    def __init__(self, db: Database, tenant_id: str, app_id: str, batch_size: int) -> None:
        self.db = db
        self.tenant_id = tenant_id
        self.app_id = app_id
        self.batch_size = batch_size

    def run(self) -> dict[str, int]:
        """Delete everything; the counts say how many rows of each table this run removed."""
        counts: dict[str, int] = {}
        counts["messages"] = self._drain(Message)
        counts["conversations"] = self._drain(Conversation)
        counts["workflow_node_executions"], counts["workflow_runs"] = self._drain_runs()
        counts["app_dataset_joins"] = self._drain(AppDatasetJoin)
        counts["installed_apps"] = self._drain(InstalledApp)
        counts["sites"] = self._drain(Site)
        counts["ops_traces"] = self._drain(OpsTrace)
        counts["apps"] = self._drain(App, App.id == self.app_id)
        return counts

    def _drain(self, model: Any, where: ColumnElement[bool] | None = None) -> int:
        """Delete ``model``'s rows of this app, ``batch_size`` at a time, until none is left."""
        condition = model.app_id == self.app_id if where is None else where
        total = 0
        while True:
            with self.db.transaction() as session:
                ids = list(
                    session.scalars(
                        select(model.id)
                        .where(model.tenant_id == self.tenant_id, condition)
                        .limit(self.batch_size)
                    )
                )
                if not ids:
                    return total
                total += _count(
                    session.execute(
                        delete(model).where(model.tenant_id == self.tenant_id, model.id.in_(ids))
                    )
                )

    def _drain_runs(self) -> tuple[int, int]:
        """Delete runs a batch at a time, each batch's node executions first.

        Node executions are found through their run (``workflow_run_id`` is indexed, their
        ``app_id`` is not), so even a run with thousands of nodes is deleted in bounded batches.
        """
        nodes = runs = 0
        while True:
            with self.db.session() as session:
                run_ids = list(
                    session.scalars(
                        select(WorkflowRun.id)
                        .where(
                            WorkflowRun.tenant_id == self.tenant_id,
                            WorkflowRun.app_id == self.app_id,
                        )
                        .limit(self.batch_size)
                    )
                )
            if not run_ids:
                return nodes, runs
            nodes += self._drain(
                WorkflowNodeExecution, WorkflowNodeExecution.workflow_run_id.in_(run_ids)
            )
            with self.db.transaction() as session:
                runs += _count(
                    session.execute(
                        delete(WorkflowRun).where(
                            WorkflowRun.tenant_id == self.tenant_id,
                            WorkflowRun.id.in_(run_ids),
                        )
                    )
                )


def _count(result: Any) -> int:
    return int(result.rowcount) if isinstance(result, CursorResult) else 0
