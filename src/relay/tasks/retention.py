"""Retention on beat: disable the documents of idle datasets, delete old messages and workflow runs.

Every clean-up works in batches of ``RELAY_RETENTION_BATCH_SIZE`` rows, each batch its own short
transaction, so it never holds locks for long and a crash loses at most one batch (the next run
carries on: every step is safe to repeat). A run stops itself before its soft time limit (the
budget) and reports ``complete: false``; the next beat continues where it stopped.

Day counts are per plan (``RELAY_RETENTION_*_DAYS``); 0 or a missing plan means never.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, exists, select, update
from sqlalchemy.orm import InstrumentedAttribute

from relay import catalog
from relay.adapters.sql import Database
from relay.config import Plan, RetentionSettings
from relay.models import (
    AppDatasetJoin,
    Dataset,
    Document,
    Message,
    Tenant,
    WorkflowNodeExecution,
    WorkflowRun,
    utcnow,
)
from relay.tasks.base import RelayTask, relay_task

log = logging.getLogger(__name__)

# Share of the soft time limit a run may spend before it stops and leaves the rest to the next.
BUDGET_SHARE = 0.8


@dataclass
class CleanupReport:
    """What one clean-up run changed, and whether it got through everything that was due."""

    counts: dict[str, int] = field(default_factory=dict)
    complete: bool = True

    def add(self, name: str, n: int) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def as_dict(self) -> dict[str, Any]:
        return {**self.counts, "complete": self.complete}


class RetentionCleaner:
    """The clean-ups, runnable from a task, the CLI or a test (``budget`` in seconds)."""

    def __init__(
        self,
        db: Database,
        settings: RetentionSettings,
        *,
        now: datetime | None = None,
        budget: float | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.now = now or utcnow()
        self._deadline = None if budget is None else time.monotonic() + budget

    def _out_of_time(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _cutoffs(self, days_by_plan: dict[Plan, int]) -> Iterator[tuple[Plan, datetime]]:
        for plan, days in days_by_plan.items():
            if days > 0:
                yield plan, self.now - timedelta(days=days)

    # --- unused datasets ------------------------------------------------------------------------

    def disable_unused_datasets(self) -> CleanupReport:
        """Disable the documents of datasets idle past their tenant's plan's day count.

        Idle: created before the cutoff, and since then no enabled document was added or changed
        and no app using the dataset received a message. Tenants are visited plan by plan, a page
        of tenants at a time.
        """
        report = CleanupReport({"datasets": 0, "documents": 0})
        for plan, cutoff in self._cutoffs(self.settings.unused_dataset_days):
            for tenant_id in self._tenants(plan):
                for dataset_id in self._idle_datasets(tenant_id, cutoff):
                    disabled = self._disable_dataset(tenant_id, dataset_id, cutoff, report)
                    if disabled:
                        report.add("datasets", 1)
                        report.add("documents", disabled)
                        log.info(
                            "idle dataset disabled",
                            extra={
                                "action": "retention.dataset_disabled",
                                "tenant_id": tenant_id,
                                "dataset_id": dataset_id,
                                "documents": disabled,
                                "idle_since": cutoff.isoformat(),
                            },
                        )
                    if not report.complete:
                        return report
        return report

    def _tenants(self, plan: Plan) -> Iterator[str]:
        last = ""
        while True:
            with self.db.session() as session:
                page = list(
                    session.scalars(
                        select(Tenant.id)
                        .where(Tenant.plan == plan.value, Tenant.id > last)
                        .order_by(Tenant.id)
                        .limit(self.settings.tenant_batch_size)
                    )
                )
            yield from page
            if len(page) < self.settings.tenant_batch_size:
                return
            last = page[-1]

    @staticmethod
    def _idle(tenant_id: str, cutoff: datetime) -> list[ColumnElement[bool]]:
        """Conditions on ``Dataset`` that make it idle since ``cutoff`` with documents to disable.

        Only enabled documents count as activity: disabling them (here, or by a user) is not use.
        """
        enabled_docs = exists().where(
            Document.tenant_id == tenant_id,
            Document.dataset_id == Dataset.id,
            Document.enabled.is_(True),
        )
        recent_docs = exists().where(
            Document.tenant_id == tenant_id,
            Document.dataset_id == Dataset.id,
            Document.enabled.is_(True),
            Document.updated_at >= cutoff,
        )
        recent_messages = exists().where(
            AppDatasetJoin.tenant_id == tenant_id,
            AppDatasetJoin.dataset_id == Dataset.id,
            Message.tenant_id == tenant_id,
            Message.app_id == AppDatasetJoin.app_id,
            Message.created_at >= cutoff,
        )
        return [
            Dataset.tenant_id == tenant_id,
            Dataset.created_at < cutoff,
            enabled_docs,
            ~recent_docs,
            ~recent_messages,
        ]

    def _idle_datasets(self, tenant_id: str, cutoff: datetime) -> list[str]:
        with self.db.session() as session:
            query = select(Dataset.id).where(*self._idle(tenant_id, cutoff)).order_by(Dataset.id)
            return list(session.scalars(query))

    def _disable_dataset(
        self, tenant_id: str, dataset_id: str, cutoff: datetime, report: CleanupReport
    ) -> int:
        """Disable the dataset's enabled documents, a batch per transaction; returns how many.

        Each batch checks again that the dataset is still idle, so a document uploaded or a
        message received meanwhile stops the clean-up of that dataset.
        """
        total = 0
        while True:
            if self._out_of_time():
                report.complete = False
                return total
            with self.db.transaction() as session:
                still_idle = session.scalar(
                    select(Dataset.id).where(
                        Dataset.id == dataset_id, *self._idle(tenant_id, cutoff)
                    )
                )
                if still_idle is None:
                    return total
                ids = list(
                    session.scalars(
                        select(Document.id)
                        .where(
                            Document.tenant_id == tenant_id,
                            Document.dataset_id == dataset_id,
                            Document.enabled.is_(True),
                        )
                        .order_by(Document.id)
                        .limit(self.settings.batch_size)
                    )
                )
                session.execute(
                    update(Document)
                    .where(Document.id.in_(ids), Document.enabled.is_(True))
                    .values(enabled=False, updated_at=utcnow())
                    .execution_options(synchronize_session=False)
                )
            total += len(ids)
            if len(ids) < self.settings.batch_size:
                return total

    # --- messages and workflow runs -------------------------------------------------------------

    def delete_old_messages(self) -> CleanupReport:
        """Delete messages older than their tenant's plan's retention."""
        report = CleanupReport({"messages": 0})
        for plan, cutoff in self._cutoffs(self.settings.message_days):
            query = (
                select(Message.id)
                .join(Tenant, Tenant.id == Message.tenant_id)
                .where(Tenant.plan == plan.value, Message.created_at < cutoff)
                .order_by(Message.created_at)
            )
            self._delete_in_batches(query, [Message.id], "messages", report)
            if not report.complete:
                break
        return report

    def delete_old_workflow_runs(self) -> CleanupReport:
        """Delete workflow runs (with their node executions) older than the plan's retention."""
        report = CleanupReport({"workflow_runs": 0})
        for plan, cutoff in self._cutoffs(self.settings.workflow_run_days):
            query = (
                select(WorkflowRun.id)
                .join(Tenant, Tenant.id == WorkflowRun.tenant_id)
                .where(Tenant.plan == plan.value, WorkflowRun.created_at < cutoff)
                .order_by(WorkflowRun.created_at)
            )
            # Node executions first: nothing relies on the database cascading the delete.
            keys = [WorkflowNodeExecution.workflow_run_id, WorkflowRun.id]
            self._delete_in_batches(query, keys, "workflow_runs", report)
            if not report.complete:
                break
        return report

    def _delete_in_batches(
        self,
        ids_query: Select[str],
        keys: list[InstrumentedAttribute[str]],
        name: str,
        report: CleanupReport,
    ) -> None:
        """Delete the rows whose ids ``ids_query`` selects, a batch per transaction.

        For each batch of ids, rows whose ``keys`` column (in order) matches are deleted.
        """
        size = self.settings.batch_size
        while True:
            if self._out_of_time():
                report.complete = False
                return
            with self.db.transaction() as session:
                ids = list(session.scalars(ids_query.limit(size)))
                for key in keys:
                    session.execute(
                        delete(key.class_)
                        .where(key.in_(ids))
                        .execution_options(synchronize_session=False)
                    )
            report.add(name, len(ids))
            if ids:
                log.info(
                    f"deleted {len(ids)} old {name}",
                    extra={"action": f"retention.{name}_deleted", "count": len(ids)},
                )
            if len(ids) < size:
                return


def _cleaner(task: RelayTask) -> RetentionCleaner:
    runtime = task.runtime
    return RetentionCleaner(
        runtime.db,
        runtime.settings.retention,
        budget=task.spec.soft_time_limit * BUDGET_SHARE,
    )


@relay_task(catalog.CLEAN_UNUSED_DATASETS)
def clean_unused_datasets(self: RelayTask) -> dict[str, Any]:
    """Disable the documents of datasets idle past their plan's day count."""
    return _cleaner(self).disable_unused_datasets().as_dict()


@relay_task(catalog.CLEAN_MESSAGES)
def clean_messages(self: RelayTask) -> dict[str, Any]:
    """Delete messages past their plan's retention."""
    return _cleaner(self).delete_old_messages().as_dict()


@relay_task(catalog.CLEAN_WORKFLOW_RUNS)
def clean_workflow_runs(self: RelayTask) -> dict[str, Any]:
    """Delete workflow runs and their node executions past their plan's retention."""
    return _cleaner(self).delete_old_workflow_runs().as_dict()
