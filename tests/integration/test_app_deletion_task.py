"""``relay.app_deletion.remove_app``: an app's rows go, in batches; nobody else's do."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import event, func, select

from relay.models import (
    App,
    AppDatasetJoin,
    Conversation,
    InstalledApp,
    Message,
    OpsTrace,
    Site,
    Tenant,
    WorkflowNodeExecution,
    WorkflowRun,
)
from relay.runtime import Runtime

REMOVE = "relay.app_deletion.remove_app"
MODELS = (
    Message,
    Conversation,
    WorkflowNodeExecution,
    WorkflowRun,
    AppDatasetJoin,
    InstalledApp,
    Site,
    OpsTrace,
    App,
)


@dataclass(frozen=True)
class Seeded:
    tenant: str
    app: str


def seed(runtime: Runtime, tenant: str | None = None, *, rows: int = 3) -> Seeded:
    """An app with ``rows`` of every kind of history (and ``rows`` nodes per run)."""
    with runtime.db.transaction() as session:
        if tenant is None:
            owner = Tenant(name="acme")
            session.add(owner)
            session.flush()
            tenant = owner.id
        app = App(tenant_id=tenant, name="bot", mode="advanced-chat")
        session.add(app)
        session.flush()
        scoped = {"tenant_id": tenant, "app_id": app.id}
        session.add(InstalledApp(**scoped))
        session.add(Site(**scoped, code=app.id[:16], title="bot"))
        for i in range(rows):
            session.add(AppDatasetJoin(**scoped, dataset_id=f"ds-{i}"))
            conversation = Conversation(**scoped)
            session.add(conversation)
            session.flush()
            for j in range(2):
                session.add(Message(**scoped, conversation_id=conversation.id, query=f"q{j}"))
            run = WorkflowRun(
                **scoped,
                triggered_from="app-run",
                version="1",
                graph={},
                created_by_role="account",
                created_by="acct",
            )
            session.add(run)
            session.flush()
            for k in range(rows):
                session.add(
                    WorkflowNodeExecution(
                        **scoped,
                        workflow_run_id=run.id,
                        index=k,
                        node_id=f"n{k}",
                        node_type="llm",
                        title="LLM",
                    )
                )
            session.add(OpsTrace(**scoped, trace_type="message", payload={"i": i}))
    return Seeded(tenant, app.id)


def counts(runtime: Runtime, app_id: str) -> dict[str, int]:
    with runtime.db.session() as session:
        out: dict[str, int] = {}
        for model in MODELS:
            column = model.id if model is App else model.app_id
            query = select(func.count()).select_from(model).where(column == app_id)
            out[model.__tablename__] = int(session.scalar(query) or 0)
        return out


def remove(runtime: Runtime, tenant: str, app: str, **kwargs: Any) -> Any:
    """Run the task body in this process, raising what it raises."""
    task = runtime.celery.tasks[REMOVE]
    return task.apply(args=[tenant, app], kwargs=kwargs, throw=True).get()


def test_an_app_is_removed_in_batches_and_a_second_run_is_harmless(
    runtime: Runtime, worker: Any
) -> None:
    doomed = seed(runtime, rows=5)
    sibling = seed(runtime, doomed.tenant, rows=2)
    stranger = seed(runtime, rows=2)
    before_sibling = counts(runtime, sibling.app)
    before_stranger = counts(runtime, stranger.app)
    headers = {"idempotency_key": "remove-1", "tenant_id": doomed.tenant}

    first = runtime.celery.send_task(
        REMOVE, args=[doomed.tenant, doomed.app], kwargs={"batch_size": 2}, headers=headers
    ).get(timeout=60)

    assert first == {
        "messages": 10,
        "conversations": 5,
        "workflow_node_executions": 25,
        "workflow_runs": 5,
        "app_dataset_joins": 5,
        "installed_apps": 1,
        "sites": 1,
        "ops_traces": 5,
        "apps": 1,
    }
    assert set(counts(runtime, doomed.app).values()) == {0}
    assert counts(runtime, sibling.app) == before_sibling
    assert counts(runtime, stranger.app) == before_stranger

    again = runtime.celery.send_task(
        REMOVE, args=[doomed.tenant, doomed.app], kwargs={"batch_size": 2}, headers=headers
    ).get(timeout=60)
    assert set(again.values()) == {0}
    assert counts(runtime, sibling.app) == before_sibling


def test_each_batch_is_its_own_transaction(runtime: Runtime) -> None:
    """With batch size 2, no statement deletes more than two rows."""
    doomed = seed(runtime, rows=3)
    deleted_per_statement: list[int] = []

    def after_cursor_execute(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE"):
            deleted_per_statement.append(cursor.rowcount)

    event.listen(runtime.db.engine, "after_cursor_execute", after_cursor_execute)
    try:
        remove(runtime, doomed.tenant, doomed.app, batch_size=2)
    finally:
        event.remove(runtime.db.engine, "after_cursor_execute", after_cursor_execute)

    assert deleted_per_statement
    assert max(deleted_per_statement) <= 2
    assert set(counts(runtime, doomed.app).values()) == {0}


def test_the_app_row_is_removed_even_when_its_history_is_already_gone(runtime: Runtime) -> None:
    doomed = seed(runtime, rows=0)
    outcome = remove(runtime, doomed.tenant, doomed.app)
    assert outcome["apps"] == 1
    assert outcome["sites"] == 1
    assert set(counts(runtime, doomed.app).values()) == {0}


def test_history_is_removed_after_the_app_row_was_deleted(runtime: Runtime) -> None:
    """The usual order: the request deletes the app, the task removes what it left."""
    doomed = seed(runtime, rows=2)
    with runtime.db.transaction() as session:
        app = session.get(App, doomed.app)
        assert app is not None
        session.delete(app)

    outcome = remove(runtime, doomed.tenant, doomed.app)

    assert outcome["apps"] == 0
    assert outcome["messages"] == 4
    assert set(counts(runtime, doomed.app).values()) == {0}


def test_another_tenants_app_is_untouched(runtime: Runtime) -> None:
    victim = seed(runtime, rows=2)
    attacker = seed(runtime, rows=0)
    before = counts(runtime, victim.app)

    outcome = remove(runtime, attacker.tenant, victim.app)

    assert set(outcome.values()) == {0}
    assert counts(runtime, victim.app) == before


def test_the_tenant_must_match_the_message(runtime: Runtime) -> None:
    victim = seed(runtime, rows=1)
    other = seed(runtime, rows=0)
    before = counts(runtime, victim.app)
    task = runtime.celery.tasks[REMOVE]
    with pytest.raises(Exception, match="message is for"):
        task.apply(
            args=[victim.tenant, victim.app], headers={"tenant_id": other.tenant}, throw=True
        ).get()
    assert counts(runtime, victim.app) == before
