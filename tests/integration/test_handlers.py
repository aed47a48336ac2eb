"""Each event handler's effect, through ``runtime.bus.emit`` inside a real transaction.

Handlers that enqueue tasks are followed through the outbox to a real worker; the tasks' own
behaviour in detail is in ``test_dataset_tasks.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from relay.config import Plan
from relay.errors import EventError
from relay.events import payloads as ev
from relay.events import signals
from relay.events.handlers.app_site import create_site
from relay.events.handlers.tenant_plan import plan_key
from relay.models import (
    App,
    AppDatasetJoin,
    Dataset,
    Document,
    DocumentSegment,
    IndexingStatus,
    InstalledApp,
    OutboxMessage,
    ProviderQuota,
    Site,
    Tenant,
)
from relay.runtime import Runtime
from tests.waiting import run_blocked


def make_tenant(runtime: Runtime, plan: Plan = Plan.SANDBOX, *, announce: bool = True) -> str:
    """A tenant, created the way the tenant service does it (event in the same transaction)."""
    with runtime.db.transaction() as session:
        row = Tenant(name="acme", plan=plan)
        session.add(row)
        session.flush()
        if announce:
            runtime.bus.emit(
                signals.tenant_was_created, ev.TenantCreated(tenant_id=row.id, plan=plan), session
            )
        return row.id


def make_app(runtime: Runtime, tenant_id: str, name: str = "Support bot") -> str:
    return add(runtime, App(tenant_id=tenant_id, name=name, mode="chat"))


def make_dataset(runtime: Runtime, tenant_id: str, name: str = "kb") -> str:
    return add(runtime, Dataset(tenant_id=tenant_id, name=name))


def add(runtime: Runtime, row: Any) -> str:
    with runtime.db.transaction() as session:
        session.add(row)
        session.flush()
        return str(row.id)


def count(runtime: Runtime, model: Any, **where: Any) -> int:
    with runtime.db.session() as session:
        query = select(func.count()).select_from(model).filter_by(**where)
        return int(session.scalar(query) or 0)


def joins(runtime: Runtime, app_id: str) -> set[str]:
    with runtime.db.session() as session:
        query = select(AppDatasetJoin.dataset_id).where(AppDatasetJoin.app_id == app_id)
        return set(session.scalars(query))


# --- app_was_created ---------------------------------------------------------------------------


def test_app_creation_installs_the_app_and_gives_it_a_site(runtime: Runtime) -> None:
    tenant = make_tenant(runtime)
    apps = [make_app(runtime, tenant, f"app {i}") for i in range(3)]
    for app_id in apps:
        with runtime.db.transaction() as session:
            payload = ev.AppCreated(tenant_id=tenant, app_id=app_id, mode="chat", name="Bot")
            runtime.bus.emit(signals.app_was_created, payload, session)
            # Emitting twice (a replayed event) must not create a second site or installation.
            runtime.bus.emit(signals.app_was_created, payload, session)

    with runtime.db.session() as session:
        sites = session.scalars(select(Site)).all()
        installed = session.scalars(select(InstalledApp)).all()
    assert sorted(s.app_id for s in sites) == sorted(apps)
    assert sorted(i.app_id for i in installed) == sorted(apps)
    assert all(s.tenant_id == tenant and s.title == "Bot" for s in sites)
    codes = [s.code for s in sites]
    assert len(set(codes)) == 3
    assert all(len(c) == 16 and c.isalnum() for c in codes)


def test_a_site_code_collision_is_retried(runtime: Runtime) -> None:
    tenant = make_tenant(runtime)
    first, second, third = (make_app(runtime, tenant) for _ in range(3))
    codes = iter(["A" * 16, "A" * 16, "B" * 16, "A" * 16, "B" * 16])
    with runtime.db.transaction() as session:
        create_site(session, tenant, first, "one", new_code=lambda: next(codes))
        create_site(session, tenant, second, "two", new_code=lambda: next(codes))
        with pytest.raises(EventError, match="no unique site code"):
            create_site(session, tenant, third, "three", new_code=lambda: next(codes, "A" * 16))
    with runtime.db.session() as session:
        by_app = dict(session.execute(select(Site.app_id, Site.code)).all())
    assert by_app == {first: "A" * 16, second: "B" * 16}


def test_a_site_code_taken_by_a_concurrent_transaction_is_retried(runtime: Runtime) -> None:
    if runtime.db.is_sqlite:
        pytest.skip("SQLite serialises write transactions: no concurrent insert can race")
    tenant = make_tenant(runtime)
    first, second = make_app(runtime, tenant), make_app(runtime, tenant)
    codes = iter(["C" * 16, "D" * 16])

    def create_second() -> Site:
        with runtime.db.transaction() as session:
            return create_site(session, tenant, second, "two", new_code=lambda: next(codes))

    with runtime.db.transaction() as session:
        session.add(Site(tenant_id=tenant, app_id=first, code="C" * 16, title="one"))
        session.flush()
        # Not committed: the second transaction's check cannot see the code; its INSERT waits.
        join = run_blocked(runtime, create_second)
    assert join().code == "D" * 16


# --- dataset joins -----------------------------------------------------------------------------


def test_model_config_updates_sync_the_dataset_joins(runtime: Runtime) -> None:
    tenant, other_tenant = make_tenant(runtime), make_tenant(runtime)
    app_id = make_app(runtime, tenant)
    d1, d2, d3 = (make_dataset(runtime, tenant, n) for n in ("d1", "d2", "d3"))
    foreign = make_dataset(runtime, other_tenant, "theirs")

    def update(config: dict[str, Any]) -> None:
        with runtime.db.transaction() as session:
            payload = ev.AppModelConfigUpdated(tenant_id=tenant, app_id=app_id, model_config=config)
            runtime.bus.emit(signals.app_model_config_was_updated, payload, session)

    entries = [{"dataset": {"enabled": True, "id": i}} for i in (d1, d2, foreign, "no-such-id")]
    update({"dataset_configs": {"datasets": {"datasets": entries}}})
    assert joins(runtime, app_id) == {d1, d2}, "other tenant's and unknown datasets ignored"

    update({"dataset_ids": [d2, d3]})
    assert joins(runtime, app_id) == {d2, d3}, "d1 dropped, d3 added"
    with runtime.db.session() as session:
        rows = session.scalars(select(AppDatasetJoin)).all()
    assert all(r.tenant_id == tenant for r in rows)

    update({})
    assert joins(runtime, app_id) == set()


def test_published_workflow_syncs_the_dataset_joins(runtime: Runtime) -> None:
    tenant = make_tenant(runtime)
    app_id = make_app(runtime, tenant)
    d1, d2 = make_dataset(runtime, tenant, "d1"), make_dataset(runtime, tenant, "d2")

    def publish(*dataset_ids: str) -> None:
        graph = {
            "nodes": [
                {"id": "start", "data": {"type": "start"}},
                {"id": "kr", "data": {"type": "knowledge-retrieval", "dataset_ids": dataset_ids}},
            ],
            "edges": [{"source": "start", "target": "kr"}],
        }
        with runtime.db.transaction() as session:
            payload = ev.AppPublishedWorkflowUpdated(tenant_id=tenant, app_id=app_id, graph=graph)
            runtime.bus.emit(signals.app_published_workflow_was_updated, payload, session)

    publish(d1)
    assert joins(runtime, app_id) == {d1}
    publish(d2)
    assert joins(runtime, app_id) == {d2}


def test_joins_are_not_written_for_another_tenants_app(runtime: Runtime) -> None:
    tenant, other_tenant = make_tenant(runtime), make_tenant(runtime)
    their_app = make_app(runtime, other_tenant)
    mine = make_dataset(runtime, tenant)
    with runtime.db.transaction() as session:
        payload = ev.AppModelConfigUpdated(
            tenant_id=tenant, app_id=their_app, model_config={"dataset_ids": [mine]}
        )
        runtime.bus.emit(signals.app_model_config_was_updated, payload, session)
    assert joins(runtime, their_app) == set()


# --- draft workflow ----------------------------------------------------------------------------


def test_syncing_a_draft_clears_the_apps_tool_parameter_cache(runtime: Runtime) -> None:
    tenant = make_tenant(runtime)
    app_id, other_app = make_app(runtime, tenant), make_app(runtime, tenant)
    mine = [f"relay:tool_params:{app_id}:tool-{i}" for i in range(1200)]
    theirs = [f"relay:tool_params:{other_app}:tool-1", f"relay:tool_params:{app_id}x:tool-1"]
    runtime.redis.mset(dict.fromkeys(mine + theirs, "{}"))

    with runtime.db.transaction() as session:
        payload = ev.AppDraftWorkflowSynced(tenant_id=tenant, app_id=app_id)
        runtime.bus.emit(signals.app_draft_workflow_was_synced, payload, session)

    assert runtime.redis.exists(*mine) == 0
    assert runtime.redis.exists(*theirs) == 2


# --- tenants -----------------------------------------------------------------------------------


def test_a_new_tenant_gets_default_quotas_and_a_cached_plan(runtime: Runtime) -> None:
    tenant = make_tenant(runtime, Plan.TEAM)
    with runtime.db.session() as session:
        rows = session.scalars(select(ProviderQuota).where(ProviderQuota.tenant_id == tenant))
        quotas = {(r.provider, r.quota_type, r.quota_limit, r.quota_used) for r in rows}
    assert quotas == {("openai", "trial", 1_000_000, 0), ("anthropic", "trial", 1_000_000, 0)}
    assert runtime.redis.get(plan_key(tenant)) == "team"

    with runtime.db.transaction() as session:
        session.execute(Tenant.__table__.update().values(plan="professional"))
        payload = ev.TenantUpdated(tenant_id=tenant, plan="professional", previous_plan="team")
        runtime.bus.emit(signals.tenant_was_updated, payload, session)
    assert runtime.redis.get(plan_key(tenant)) == "professional"


def test_default_quotas_come_from_the_settings(runtime: Runtime) -> None:
    runtime.settings.tenancy.default_quotas = {"mistral": 5}  # this test's own settings object
    make_tenant(runtime)
    with runtime.db.session() as session:
        rows = session.execute(select(ProviderQuota.provider, ProviderQuota.quota_limit)).all()
    assert [tuple(r) for r in rows] == [("mistral", 5)]


# --- datasets and documents: tasks through the outbox to a real worker ---------------------------


def outbox_rows(runtime: Runtime, task_name: str) -> list[OutboxMessage]:
    with runtime.db.session() as session:
        query = select(OutboxMessage).where(OutboxMessage.task_name == task_name)
        return list(session.scalars(query))


def run_enqueued(runtime: Runtime, task_name: str) -> Any:
    """The result of the one task ``task_name`` the handlers enqueued (run by the worker)."""
    (row,) = outbox_rows(runtime, task_name)
    return runtime.celery.AsyncResult(row.id).get(timeout=30)


def upload(runtime: Runtime, tenant: str, dataset: str, text: str) -> str:
    """What the document service does: the row in ``waiting`` and the event, one transaction."""
    with runtime.db.transaction() as session:
        row = Document(tenant_id=tenant, dataset_id=dataset, name="doc.txt", content=text)
        session.add(row)
        session.flush()
        payload = ev.DocumentIndexCreated(
            tenant_id=tenant, dataset_id=dataset, document_ids=(row.id,)
        )
        runtime.bus.emit(signals.document_index_created, payload, session)
        return row.id


def test_indexing_goes_to_the_queue_of_the_tenants_plan(runtime: Runtime) -> None:
    free, paid = make_tenant(runtime), make_tenant(runtime, Plan.PROFESSIONAL)
    free_ds, paid_ds = make_dataset(runtime, free), make_dataset(runtime, paid)
    # The plan is read in the upload's transaction (no Redis call inside it): neither a cold
    # cache nor a stale one changes the queue.
    runtime.redis.delete(plan_key(paid))
    runtime.redis.set(plan_key(free), "enterprise")
    upload(runtime, free, free_ds, "x")
    upload(runtime, paid, paid_ds, "y")
    rows = outbox_rows(runtime, "relay.dataset.index_documents")
    assert {r.tenant_id: r.queue for r in rows} == {free: "dataset", paid: "priority_dataset"}


def test_document_and_dataset_events_run_their_tasks_on_a_worker(
    runtime: Runtime, worker: Any
) -> None:
    tenant = make_tenant(runtime, Plan.TEAM)
    dataset, app_id = make_dataset(runtime, tenant), make_app(runtime, tenant)
    with runtime.db.transaction() as session:
        session.add(AppDatasetJoin(tenant_id=tenant, app_id=app_id, dataset_id=dataset))

    doc = upload(runtime, tenant, dataset, "First paragraph.\n\nSecond one.")
    assert run_enqueued(runtime, "relay.dataset.index_documents") == {doc: "completed"}
    with runtime.db.session() as session:
        indexed = session.get(Document, doc)
        assert indexed is not None
        assert (indexed.indexing_status, indexed.word_count) == (IndexingStatus.COMPLETED, 4)
    assert count(runtime, DocumentSegment, document_id=doc) == 1

    # The services delete the row and emit in the same transaction; the tasks clean up after.
    with runtime.db.transaction() as session:
        session.execute(Document.__table__.delete().where(Document.id == doc))
        payload = ev.DocumentDeleted(tenant_id=tenant, dataset_id=dataset, document_id=doc)
        runtime.bus.emit(signals.document_was_deleted, payload, session)
    assert run_enqueued(runtime, "relay.dataset.clean_document") == {"segments": 0}
    assert count(runtime, DocumentSegment, document_id=doc) == 0

    with runtime.db.transaction() as session:
        session.execute(Dataset.__table__.delete().where(Dataset.id == dataset))
        runtime.bus.emit(
            signals.dataset_was_deleted,
            ev.DatasetDeleted(tenant_id=tenant, dataset_id=dataset),
            session,
        )
    (row,) = outbox_rows(runtime, "relay.dataset.clean_dataset")
    assert (row.queue, row.args, row.tenant_id) == ("dataset", [tenant, dataset], tenant)
    assert run_enqueued(runtime, "relay.dataset.clean_dataset")["joins"] == 1
    assert joins(runtime, app_id) == set()


def test_an_enqueue_handler_without_a_session_fails_alone(runtime: Runtime) -> None:
    """A handler needs the caller's session; emitted without one it fails, isolated and counted."""
    tenant = make_tenant(runtime)
    runtime.bus.emit(
        signals.dataset_was_deleted, ev.DatasetDeleted(tenant_id=tenant, dataset_id="x")
    )
    assert outbox_rows(runtime, "relay.dataset.clean_dataset") == []
    assert runtime.bus.error_rates()["dataset_was_deleted"]["failures"] == 1
