"""Retention on beat: idle datasets disabled per plan, old messages and workflow runs deleted."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from celery.result import AsyncResult
from sqlalchemy import func, select

from relay import catalog
from relay.config import Plan, RetentionSettings, load_settings
from relay.errors import ConfigError
from relay.models import (
    App,
    AppDatasetJoin,
    AppMode,
    Conversation,
    CreatorRole,
    Dataset,
    Document,
    Message,
    Tenant,
    WorkflowNodeExecution,
    WorkflowRun,
    WorkflowRunTriggeredFrom,
    new_id,
    utcnow,
)
from relay.runtime import Runtime
from relay.tasks.retention import RetentionCleaner
from tests.conftest import run_worker

NOW = utcnow()


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


@dataclass
class World:
    """Rows inserted straight into the database, as the API and workers would have left them."""

    runtime: Runtime

    def add(self, *rows: Any) -> None:
        with self.runtime.db.transaction() as session:
            session.add_all(rows)

    def tenant(self, plan: Plan) -> str:
        tenant_id = new_id()
        self.add(Tenant(id=tenant_id, name=f"{plan} co", plan=plan.value))
        return tenant_id

    def dataset(self, tenant_id: str, *, created: float, docs: list[float]) -> str:
        """A dataset created ``created`` days ago with documents last changed ``docs`` days ago."""
        dataset_id = new_id()
        rows: list[Any] = [
            Dataset(
                id=dataset_id,
                tenant_id=tenant_id,
                name="handbook",
                created_at=ago(created),
                updated_at=ago(created),
            )
        ]
        rows += [
            Document(
                tenant_id=tenant_id,
                dataset_id=dataset_id,
                name=f"doc {i}.md",
                content="# Onboarding\n\nWelcome.",
                position=i,
                indexing_status="completed",
                created_at=ago(created),
                updated_at=ago(days),
            )
            for i, days in enumerate(docs)
        ]
        self.add(*rows)
        return dataset_id

    def app(self, tenant_id: str, dataset_id: str | None = None) -> str:
        app_id = new_id()
        rows: list[Any] = [App(id=app_id, tenant_id=tenant_id, name="bot", mode=AppMode.CHAT)]
        if dataset_id:
            rows.append(AppDatasetJoin(tenant_id=tenant_id, app_id=app_id, dataset_id=dataset_id))
        self.add(*rows)
        return app_id

    def messages(self, tenant_id: str, app_id: str, days: list[float]) -> list[str]:
        conversation = Conversation(id=new_id(), tenant_id=tenant_id, app_id=app_id, name="c")
        rows = [
            Message(
                id=new_id(),
                tenant_id=tenant_id,
                app_id=app_id,
                conversation_id=conversation.id,
                query="what is the leave policy?",
                answer="25 days.",
                created_at=ago(d),
                updated_at=ago(d),
            )
            for d in days
        ]
        self.add(conversation, *rows)
        return [row.id for row in rows]

    def run(self, tenant_id: str, app_id: str, days: float, nodes: int = 3) -> str:
        run = WorkflowRun(
            id=new_id(),
            tenant_id=tenant_id,
            app_id=app_id,
            triggered_from=WorkflowRunTriggeredFrom.APP_RUN,
            version="1",
            graph={"nodes": [], "edges": []},
            status="succeeded",
            created_by_role=CreatorRole.END_USER,
            created_by=new_id(),
            created_at=ago(days),
        )
        self.add(run)
        self.add(
            *(
                WorkflowNodeExecution(
                    tenant_id=tenant_id,
                    app_id=app_id,
                    workflow_run_id=run.id,
                    index=i,
                    node_id=f"n{i}",
                    node_type="llm",
                    title=f"step {i}",
                    status="succeeded",
                    created_at=ago(days),
                )
                for i in range(nodes)
            )
        )
        return run.id

    def enabled(self, dataset_id: str) -> list[bool]:
        with self.runtime.db.session() as session:
            query = select(Document.enabled).where(Document.dataset_id == dataset_id)
            return list(session.scalars(query.order_by(Document.position)))

    def ids(self, model: Any) -> set[str]:
        with self.runtime.db.session() as session:
            return set(session.scalars(select(model.id)))

    def count(self, model: Any) -> int:
        with self.runtime.db.session() as session:
            return int(session.scalar(select(func.count()).select_from(model)) or 0)


@pytest.fixture
def world(runtime: Runtime) -> World:
    return World(runtime)


def cleaner(runtime: Runtime, budget: float | None = None, **overrides: Any) -> RetentionCleaner:
    settings = RetentionSettings(**{"batch_size": 2, "tenant_batch_size": 2, **overrides})
    return RetentionCleaner(runtime.db, settings, now=NOW, budget=budget)


def test_idle_datasets_are_disabled_by_plan(world: World, runtime: Runtime) -> None:
    sandbox, pro = world.tenant(Plan.SANDBOX), world.tenant(Plan.PROFESSIONAL)
    team = world.tenant(Plan.TEAM)
    idle = world.dataset(sandbox, created=60, docs=[20, 9, 8, 40, 12])  # five: three batches
    touched = world.dataset(sandbox, created=60, docs=[20, 2])
    young = world.dataset(sandbox, created=3, docs=[])
    asked = world.dataset(sandbox, created=60, docs=[30])
    world.messages(sandbox, world.app(sandbox, asked), [1])
    pro_idle_8 = world.dataset(pro, created=60, docs=[8])
    pro_idle_31 = world.dataset(pro, created=60, docs=[31, 45])
    team_idle = world.dataset(team, created=900, docs=[400])
    # More sandbox tenants than a page of tenants, each with an idle dataset.
    extra = [world.dataset(world.tenant(Plan.SANDBOX), created=30, docs=[10]) for _ in range(3)]

    report = cleaner(runtime).disable_unused_datasets()
    assert report.as_dict() == {"datasets": 5, "documents": 10, "complete": True}
    assert world.enabled(idle) == [False] * 5
    assert world.enabled(touched) == [True, True], "a document changed 2 days ago"
    assert world.enabled(young) == []
    assert world.enabled(asked) == [True], "an app using it got a message yesterday"
    assert world.enabled(pro_idle_8) == [True], "professional keeps 30 days"
    assert world.enabled(pro_idle_31) == [False, False]
    assert world.enabled(team_idle) == [True], "team datasets are never cleaned"
    assert all(world.enabled(d) == [False] for d in extra)

    again = cleaner(runtime).disable_unused_datasets()
    assert again.as_dict() == {"datasets": 0, "documents": 0, "complete": True}, "idempotent"


def test_a_disabled_document_is_not_activity(world: World, runtime: Runtime) -> None:
    tenant = world.tenant(Plan.SANDBOX)
    dataset = world.dataset(tenant, created=60, docs=[30, 20])
    with runtime.db.transaction() as session:
        first = session.scalars(select(Document).where(Document.dataset_id == dataset)).first()
        assert first is not None
        first.enabled = False  # a user switched one off today
    assert cleaner(runtime).disable_unused_datasets().counts["documents"] == 1
    assert world.enabled(dataset) == [False, False]


def test_old_messages_are_deleted_per_plan_in_batches(world: World, runtime: Runtime) -> None:
    sandbox, team = world.tenant(Plan.SANDBOX), world.tenant(Plan.TEAM)
    sandbox_app, team_app = world.app(sandbox), world.app(team)
    old = world.messages(sandbox, sandbox_app, [31, 40, 100, 365, 45])
    recent = world.messages(sandbox, sandbox_app, [29, 1])
    team_old = world.messages(team, team_app, [365, 100])

    report = cleaner(runtime).delete_old_messages()
    assert report.as_dict() == {"messages": len(old), "complete": True}
    assert world.ids(Message) == set(recent + team_old), "team keeps messages by default"

    team_90 = cleaner(runtime, message_days={Plan.TEAM: 90})
    assert team_90.delete_old_messages().counts == {"messages": 2}
    assert world.ids(Message) == set(recent)


def test_old_workflow_runs_go_with_their_node_executions(world: World, runtime: Runtime) -> None:
    sandbox, pro = world.tenant(Plan.SANDBOX), world.tenant(Plan.PROFESSIONAL)
    app, pro_app = world.app(sandbox), world.app(pro)
    old = [world.run(sandbox, app, days) for days in (31, 60, 90)]
    kept = world.run(sandbox, app, 10)
    pro_old = world.run(pro, pro_app, 200)

    report = cleaner(runtime).delete_old_workflow_runs()
    assert report.as_dict() == {"workflow_runs": len(old), "complete": True}
    assert world.ids(WorkflowRun) == {kept, pro_old}
    assert world.count(WorkflowNodeExecution) == 6, "only the kept runs' node executions remain"


def test_a_run_out_of_budget_stops_and_the_next_run_finishes(
    world: World, runtime: Runtime
) -> None:
    tenant = world.tenant(Plan.SANDBOX)
    world.messages(tenant, world.app(tenant), [40, 50, 60])
    stopped = cleaner(runtime, budget=0).delete_old_messages()
    assert stopped.as_dict() == {"messages": 0, "complete": False}
    assert cleaner(runtime).delete_old_messages().counts == {"messages": 3}


def test_retention_tasks_run_on_a_worker(world: World, runtime: Runtime) -> None:
    tenant = world.tenant(Plan.SANDBOX)
    app = world.app(tenant)
    world.messages(tenant, app, [31, 1])
    world.run(tenant, app, 31)
    world.dataset(tenant, created=20, docs=[10])
    expected = {
        "relay.retention.clean_messages": {"messages": 1, "complete": True},
        "relay.retention.clean_workflow_runs": {"workflow_runs": 1, "complete": True},
        "relay.retention.clean_unused_datasets": {
            "datasets": 1,
            "documents": 1,
            "complete": True,
        },
    }
    with run_worker(runtime, queues=["schedule"]):
        sent = {name: runtime.celery.send_task(name) for name in expected}
        results = {
            name: AsyncResult(r.id, app=runtime.celery).get(timeout=30) for name, r in sent.items()
        }
    assert results == expected
    assert world.count(Message) == 1
    assert world.count(WorkflowNodeExecution) == 0


def test_beat_entries_are_switchable(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    names = [entry.name for entry in catalog.enabled_beat_entries(load_settings(var_dir=tmp_path))]
    assert names == [entry.name for entry in catalog.BEAT]
    assert {"clean-unused-datasets", "clean-messages", "clean-workflow-runs"} <= set(names)

    monkeypatch.setenv("RELAY_RETENTION_DISABLED_BEATS", '["clean-messages", "snapshot-queues"]')
    enabled = catalog.enabled_beat_entries(load_settings(var_dir=tmp_path))
    assert {entry.name for entry in enabled} == set(names) - {"clean-messages", "snapshot-queues"}

    monkeypatch.setenv("RELAY_RETENTION_DISABLED_BEATS", '["clean-mesages"]')
    with pytest.raises(ConfigError, match=r"RELAY_RETENTION_DISABLED_BEATS.*clean-mesages"):
        catalog.enabled_beat_entries(load_settings(var_dir=tmp_path))


def test_retention_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    defaults = load_settings(var_dir=tmp_path).retention
    assert defaults.unused_dataset_days == {
        Plan.SANDBOX: 7,
        Plan.PROFESSIONAL: 30,
        Plan.TEAM: 0,
        Plan.ENTERPRISE: 0,
    }
    monkeypatch.setenv("RELAY_RETENTION_MESSAGE_DAYS", '{"team": 90, "enterprise": 365}')
    monkeypatch.setenv("RELAY_RETENTION_BATCH_SIZE", "50")
    settings = load_settings(var_dir=tmp_path).retention
    assert settings.message_days == {Plan.TEAM: 90, Plan.ENTERPRISE: 365}
    assert settings.batch_size == 50
    monkeypatch.setenv("RELAY_RETENTION_WORKFLOW_RUN_DAYS", '{"sandbox": -1}')
    with pytest.raises(ConfigError, match="RELAY_RETENTION_WORKFLOW_RUN_DAYS"):
        load_settings(var_dir=tmp_path)
