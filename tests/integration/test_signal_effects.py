"""Every domain signal, end to end: the API call that emits it, then the effect of relay's handlers.

Each test drives the real app through Flask's test client with real credentials (admin token,
tenant API keys), checks that the call emitted its signal, and asserts what the registered
handlers left behind: rows (read back through ``runtime.db``), Redis keys, and tasks published
through the outbox and run by a real in-process Celery worker (``worker`` fixture, every queue).
Asynchronous effects are awaited with ``wait_until`` against a deadline, never a bare sleep.

The handlers' finer rules (idempotency, savepoints, queue choice...) are covered against the bus
directly in ``test_handlers*.py``; here the point is that the API, the services, the bus, the
outbox and the worker are wired together so that each event really has its effect.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select, update

from relay.config import Settings
from relay.events.handlers.tenant_plan import PLAN_TTL, plan_key
from relay.models import (
    App,
    AppDatasetJoin,
    Conversation,
    Dataset,
    Document,
    DocumentSegment,
    IndexingStatus,
    InstalledApp,
    Message,
    OutboxMessage,
    ProviderQuota,
    QuotaType,
    SegmentStatus,
    Site,
    TaskRecord,
    TaskStatus,
)
from tests.integration.test_api_support import (
    ADMIN,
    Api,
    TenantCredentials,
    admin_settings,
    captured_events,
)
from tests.waiting import wait_until

TASK_TIMEOUT = 60.0

# Long enough that the indexer splits each document into several segments (500 characters max).
PARAGRAPHS = [
    " ".join(f"Paragraph {p} sentence {s} talks about relay's event backbone." for s in range(8))
    for p in range(4)
]
LONG_TEXT = "\n\n".join(PARAGRAPHS)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The suite's settings plus an admin token, so that ``app``, ``runtime`` and ``worker``
    (conftest) are the very app this module drives over HTTP."""
    return admin_settings(settings)


@pytest.fixture
def api(app: Any) -> Api:
    return Api(app)


# --- helpers -------------------------------------------------------------------------------------


def emitted(events: list[tuple[str, Any]], name: str) -> list[Any]:
    """Payloads of signal ``name`` among the captured events."""
    return [payload for signal, payload in events if signal == name]


def count(api: Api, model: Any, **where: Any) -> int:
    with api.runtime.db.session() as session:
        return int(session.scalar(select(func.count()).select_from(model).filter_by(**where)) or 0)


def joins(api: Api, app_id: str) -> set[str]:
    return {row.dataset_id for row in api.rows(AppDatasetJoin, app_id=app_id)}


def create_app(api: Api, tenant: TenantCredentials, mode: str = "chat", **body: Any) -> str:
    created = api.ok("POST", "/v1/apps", tenant, 201, json={"name": "bot", "mode": mode, **body})
    return str(created["id"])


def create_dataset(api: Api, tenant: TenantCredentials, name: str = "kb") -> str:
    return str(api.ok("POST", "/v1/datasets", tenant, 201, json={"name": name})["id"])


def upload(api: Api, tenant: TenantCredentials, dataset: str, *docs: tuple[str, str]) -> list[str]:
    """Upload ``(name, content)`` documents, one request each; their ids, in order."""
    ids = []
    for name, content in docs:
        body = {"name": name, "content": content}
        created = api.ok("POST", f"/v1/datasets/{dataset}/documents", tenant, 201, json=body)
        ids.append(created["documents"][0]["id"])
    return ids


def finished_task(api: Api, task_name: str, *args: Any) -> TaskRecord:
    """The record of the one ``task_name`` enqueued with ``args``, once the worker finished it.

    The outbox row id is the Celery task id, and ``RelayTask`` records every run under it.
    """
    rows = [r for r in api.rows(OutboxMessage, task_name=task_name) if r.args == list(args)]
    assert len(rows) == 1, f"expected one {task_name}{list(args)} in the outbox, found {rows}"

    def terminal() -> TaskRecord | None:
        with api.runtime.db.session() as session:
            record = session.get(TaskRecord, rows[0].id)
            return record if record is not None and TaskStatus(record.status).terminal else None

    record: TaskRecord = wait_until(terminal, TASK_TIMEOUT, what=f"{task_name} to finish")
    assert record.status == TaskStatus.SUCCESS, (record.status, record.error)
    return record


def wait_indexed(api: Api, document_ids: list[str]) -> None:
    """Until the worker has moved every document to ``completed`` (fails fast on ``error``)."""

    def done() -> bool:
        with api.runtime.db.session() as session:
            rows = session.scalars(select(Document).where(Document.id.in_(document_ids))).all()
        statuses = {row.id: row.indexing_status for row in rows}
        assert IndexingStatus.ERROR not in statuses.values(), [r.error for r in rows]
        return len(statuses) == len(document_ids) and set(statuses.values()) == {
            IndexingStatus.COMPLETED
        }

    wait_until(done, TASK_TIMEOUT, what=f"documents {document_ids} to be indexed")


def quota_used(api: Api, tenant_id: str) -> dict[tuple[str, str], int]:
    rows = api.rows(ProviderQuota, tenant_id=tenant_id)
    return {(row.provider, row.quota_type): row.quota_used for row in rows}


def message(tokens: tuple[int, int] = (3, 4), **overrides: Any) -> dict[str, Any]:
    return {
        "query": "What is relay?",
        "answer": "An event backbone.",
        "message_tokens": tokens[0],
        "answer_tokens": tokens[1],
        **overrides,
    }


# --- tenant_was_created --------------------------------------------------------------------------


def test_tenant_was_created_gives_default_quotas_and_caches_the_plan(api: Api) -> None:
    with captured_events(api.runtime) as events:
        tenant = api.create_tenant(plan="professional")
    assert [p.tenant_id for p in emitted(events, "tenant_was_created")] == [tenant.id]

    defaults = api.runtime.settings.tenancy.default_quotas
    assert defaults, "the default settings give every tenant a trial quota"
    rows = api.rows(ProviderQuota, tenant_id=tenant.id)
    assert {(r.provider, r.quota_type, r.quota_limit, r.quota_used) for r in rows} == {
        (provider, QuotaType.TRIAL, limit, 0) for provider, limit in defaults.items()
    }
    assert api.runtime.redis.get(plan_key(tenant.id)) == "professional"
    assert 0 < api.runtime.redis.ttl(plan_key(tenant.id)) <= PLAN_TTL


# --- tenant_was_updated --------------------------------------------------------------------------


def test_tenant_was_updated_refreshes_the_plan_cache_and_the_indexing_queue(
    api: Api, tenant: TenantCredentials
) -> None:
    dataset = create_dataset(api, tenant)
    assert api.runtime.redis.get(plan_key(tenant.id)) == "sandbox"
    upload(api, tenant, dataset, ("before.txt", "uploaded on the sandbox plan"))

    with captured_events(api.runtime) as events:
        updated = api.client.patch(f"/v1/tenants/{tenant.id}", json={"plan": "team"}, headers=ADMIN)
    assert updated.status_code == 200, updated.json
    assert [(p.plan, p.previous_plan) for p in emitted(events, "tenant_was_updated")] == [
        ("team", "sandbox")
    ]
    assert api.runtime.redis.get(plan_key(tenant.id)) == "team"
    assert 0 < api.runtime.redis.ttl(plan_key(tenant.id)) <= PLAN_TTL

    # The cached plan is what routes the tenant's indexing: paid plans get the priority queue.
    upload(api, tenant, dataset, ("after.txt", "uploaded on the team plan"))
    rows = api.rows(OutboxMessage, task_name="relay.dataset.index_documents")
    assert sorted(row.queue for row in rows) == ["dataset", "priority_dataset"]

    # The same plan again changes nothing and emits nothing.
    with captured_events(api.runtime) as events:
        again = api.client.patch(f"/v1/tenants/{tenant.id}", json={"plan": "team"}, headers=ADMIN)
    assert again.status_code == 200
    assert emitted(events, "tenant_was_updated") == []


# --- app_was_created -----------------------------------------------------------------------------


def test_app_was_created_installs_the_app_and_gives_it_a_site(
    api: Api, tenant: TenantCredentials
) -> None:
    with captured_events(api.runtime) as events:
        first = create_app(api, tenant, name="Support bot")
        second = create_app(api, tenant, mode="workflow", name="Flow")
    assert [p.app_id for p in emitted(events, "app_was_created")] == [first, second]

    sites = {site.app_id: site for site in api.rows(Site, tenant_id=tenant.id)}
    assert set(sites) == {first, second}
    assert (sites[first].title, sites[second].title) == ("Support bot", "Flow")
    codes = [site.code for site in sites.values()]
    assert len(set(codes)) == 2
    assert all(len(code) == 16 and code.isalnum() for code in codes)
    installed = api.rows(InstalledApp, tenant_id=tenant.id)
    assert sorted(row.app_id for row in installed) == sorted([first, second])


# --- app_was_deleted -----------------------------------------------------------------------------


def _app_with_history(api: Api, tenant: TenantCredentials) -> str:
    dataset = create_dataset(api, tenant)
    app_id = create_app(api, tenant)
    config = {"dataset_ids": [dataset]}
    api.ok("PUT", f"/v1/apps/{app_id}/model-config", tenant, json={"model_config": config})
    for query in ("one", "two"):
        api.ok("POST", f"/v1/apps/{app_id}/messages", tenant, 201, json=message(query=query))
    assert joins(api, app_id) == {dataset}
    assert count(api, Message, app_id=app_id) == 2
    return app_id


def test_app_was_deleted_removes_the_app_with_its_site_installation_and_joins(
    api: Api, tenant: TenantCredentials, worker: Any
) -> None:
    app_id = _app_with_history(api, tenant)
    keep = create_app(api, tenant, name="keep me")

    with captured_events(api.runtime) as events:
        response = api.call("DELETE", f"/v1/apps/{app_id}", tenant)
    assert response.status_code == 204
    assert [p.app_id for p in emitted(events, "app_was_deleted")] == [app_id]
    # What the request itself removes today (the service, in its transaction).
    for model in (AppDatasetJoin, InstalledApp, Site):
        assert count(api, model, app_id=app_id) == 0, model.__name__
    assert count(api, App, id=app_id) == 0
    assert api.call("GET", f"/v1/apps/{app_id}", tenant).status_code == 404
    # Nothing of the other app is touched.
    assert count(api, Site, app_id=keep) == count(api, InstalledApp, app_id=keep) == 1


def test_app_was_deleted_removes_the_apps_history_on_a_worker(
    api: Api, tenant: TenantCredentials, worker: Any
) -> None:
    app_id = _app_with_history(api, tenant)
    other = create_app(api, tenant, name="other")
    api.ok("POST", f"/v1/apps/{other}/messages", tenant, 201, json=message())

    assert api.call("DELETE", f"/v1/apps/{app_id}", tenant).status_code == 204
    # Fails fast today: nothing was put into the outbox for the deleted app.
    finished_task(api, "relay.app_deletion.remove_app", tenant.id, app_id)
    assert count(api, Message, app_id=app_id) == 0
    assert count(api, Conversation, app_id=app_id) == 0
    assert count(api, Message, app_id=other) == 1


# --- app_model_config_was_updated ----------------------------------------------------------------


def test_app_model_config_was_updated_syncs_the_app_dataset_joins(
    api: Api, tenant: TenantCredentials
) -> None:
    d1, d2, d3 = (create_dataset(api, tenant, name) for name in ("d1", "d2", "d3"))
    foreign = create_dataset(api, api.create_tenant(name="other"), "theirs")
    app_id = create_app(api, tenant)
    path = f"/v1/apps/{app_id}/model-config"

    def entries(*ids: str, enabled: bool = True) -> list[dict[str, Any]]:
        return [{"dataset": {"id": i, "enabled": enabled}} for i in ids]

    with captured_events(api.runtime) as events:
        config = {"dataset_configs": {"datasets": {"datasets": entries(d1, d2, foreign)}}}
        api.ok("PUT", path, tenant, json={"model_config": config})
    assert [p.app_id for p in emitted(events, "app_model_config_was_updated")] == [app_id]
    assert joins(api, app_id) == {d1, d2}, "another tenant's dataset is never linked"
    assert {row.tenant_id for row in api.rows(AppDatasetJoin, app_id=app_id)} == {tenant.id}

    # d1 disabled, d2 kept, d3 added through an agent tool: d1's join goes, d3's comes.
    config = {
        "dataset_configs": {"datasets": {"datasets": entries(d1, enabled=False) + entries(d2)}},
        "agent_mode": {"tools": entries(d3)},
    }
    api.ok("PUT", path, tenant, json={"model_config": config})
    assert joins(api, app_id) == {d2, d3}

    api.ok("PUT", path, tenant, json={"model_config": {"model": "gpt-4o"}})
    assert joins(api, app_id) == set()
    assert count(api, AppDatasetJoin) == 0


def test_an_app_created_with_a_model_config_links_its_datasets(
    api: Api, tenant: TenantCredentials
) -> None:
    dataset = create_dataset(api, tenant)
    app_id = create_app(api, tenant, model_config={"dataset_ids": [dataset]})
    assert joins(api, app_id) == {dataset}


# --- app_published_workflow_was_updated ----------------------------------------------------------


def graph(*dataset_ids: str) -> dict[str, Any]:
    """A start -> knowledge retrieval -> end workflow retrieving from ``dataset_ids``."""
    nodes = [
        {"id": "start", "data": {"type": "start", "variables": [{"variable": "q"}]}},
        {
            "id": "kr",
            "data": {
                "type": "knowledge-retrieval",
                "dataset_ids": list(dataset_ids),
                "query_variable_selector": ["start", "q"],
            },
        },
        {"id": "end", "data": {"type": "end"}},
    ]
    edges = [
        {"id": "e1", "source": "start", "target": "kr"},
        {"id": "e2", "source": "kr", "target": "end"},
    ]
    return {"nodes": nodes, "edges": edges}


def test_app_published_workflow_was_updated_syncs_the_app_dataset_joins(
    api: Api, tenant: TenantCredentials
) -> None:
    d1, d2, d3 = (create_dataset(api, tenant, name) for name in ("d1", "d2", "d3"))
    app_id = create_app(api, tenant, mode="workflow")
    draft, publish = f"/v1/apps/{app_id}/workflows/draft", f"/v1/apps/{app_id}/workflows/publish"

    api.ok("PUT", draft, tenant, json={"graph": graph(d1, d2)})
    assert joins(api, app_id) == set(), "a draft is not what runs: it links nothing yet"

    with captured_events(api.runtime) as events:
        api.ok("POST", publish, tenant)
    (published,) = emitted(events, "app_published_workflow_was_updated")
    assert published.app_id == app_id
    assert joins(api, app_id) == {d1, d2}

    api.ok("PUT", draft, tenant, json={"graph": graph(d2, d3)})
    assert joins(api, app_id) == {d1, d2}, "the published workflow still uses d1 and d2"
    api.ok("POST", publish, tenant)
    assert joins(api, app_id) == {d2, d3}

    api.ok("PUT", draft, tenant, json={"graph": graph()})
    api.ok("POST", publish, tenant)
    assert joins(api, app_id) == set()


# --- app_draft_workflow_was_synced ---------------------------------------------------------------


def test_app_draft_workflow_was_synced_drops_the_apps_cached_tool_parameters(
    api: Api, tenant: TenantCredentials
) -> None:
    app_id = create_app(api, tenant, mode="advanced-chat")
    other = create_app(api, tenant, mode="workflow")
    redis = api.runtime.redis
    # More keys than one SCAN/DELETE batch (500), so that batching is exercised too.
    own = {f"relay:tool_params:{app_id}:tool-{i}": "{}" for i in range(1200)}
    kept = {
        f"relay:tool_params:{other}:tool-0": "{}",
        f"relay:tool_params:{app_id}": "not under the app's prefix",
        f"relay:other:{app_id}:tool-0": "{}",
    }
    redis.mset({**own, **kept})

    with captured_events(api.runtime) as events:
        api.ok("PUT", f"/v1/apps/{app_id}/workflows/draft", tenant, json={"graph": graph()})
    assert [p.app_id for p in emitted(events, "app_draft_workflow_was_synced")] == [app_id]
    assert list(redis.scan_iter(match=f"relay:tool_params:{app_id}:*", count=1000)) == []
    assert redis.exists(*kept) == len(kept)


# --- document_index_created ----------------------------------------------------------------------


def test_document_index_created_indexes_the_documents_on_a_worker(
    api: Api, tenant: TenantCredentials, worker: Any
) -> None:
    dataset = create_dataset(api, tenant)
    markdown = "# Relay guide\n\nThe **outbox** publishes tasks *after* commit."
    with captured_events(api.runtime) as events:
        long_doc, md_doc = upload(api, tenant, dataset, ("long.txt", LONG_TEXT), ("g.md", markdown))
    assert [p.document_ids for p in emitted(events, "document_index_created")] == [
        (long_doc,),
        (md_doc,),
    ]

    wait_indexed(api, [long_doc, md_doc])
    segments = {
        doc: sorted(api.rows(DocumentSegment, document_id=doc), key=lambda s: s.position)
        for doc in (long_doc, md_doc)
    }
    assert len(segments[long_doc]) > 1, "a long document is split into several segments"
    for rows in segments.values():
        assert [s.position for s in rows] == list(range(1, len(rows) + 1))
        assert {(s.status, s.tenant_id, s.dataset_id) for s in rows} == {
            (SegmentStatus.COMPLETED, tenant.id, dataset)
        }
    assert all(
        p.split(".")[0] in " ".join(s.content for s in segments[long_doc]) for p in PARAGRAPHS
    )
    assert [s.content for s in segments[md_doc]] == [
        "Relay guide\n\nThe outbox publishes tasks after commit."
    ]

    view = api.ok("GET", f"/v1/datasets/{dataset}/documents/{long_doc}", tenant)
    assert view["indexing_status"] == "completed"
    assert view["segment_count"] == len(segments[long_doc])
    assert view["word_count"] == sum(s.word_count for s in segments[long_doc])
    assert view["completed_at"] is not None
    assert finished_task(
        api, "relay.dataset.index_documents", tenant.id, dataset, [md_doc]
    ).result == {md_doc: "completed"}


# --- document_was_deleted ------------------------------------------------------------------------


def test_document_was_deleted_removes_its_segments_and_runs_the_cleanup(
    api: Api, tenant: TenantCredentials, worker: Any
) -> None:
    dataset = create_dataset(api, tenant)
    doomed, kept = upload(api, tenant, dataset, ("doomed.txt", LONG_TEXT), ("kept.txt", LONG_TEXT))
    wait_indexed(api, [doomed, kept])
    kept_segments = count(api, DocumentSegment, document_id=kept)
    assert count(api, DocumentSegment, document_id=doomed) == kept_segments > 1

    with captured_events(api.runtime) as events:
        response = api.call("DELETE", f"/v1/datasets/{dataset}/documents/{doomed}", tenant)
    assert response.status_code == 204
    assert [p.document_id for p in emitted(events, "document_was_deleted")] == [doomed]

    record = finished_task(api, "relay.dataset.clean_document", tenant.id, dataset, doomed)
    assert record.tenant_id == tenant.id
    assert count(api, Document, id=doomed) == 0
    assert count(api, DocumentSegment, document_id=doomed) == 0
    assert count(api, DocumentSegment, document_id=kept) == kept_segments
    status = api.call("GET", f"/v1/datasets/{dataset}/documents/{doomed}", tenant)
    assert status.status_code == 404


# --- dataset_was_deleted -------------------------------------------------------------------------


def test_dataset_was_deleted_removes_its_content_and_runs_the_cleanup(
    api: Api, tenant: TenantCredentials, worker: Any
) -> None:
    doomed, kept = create_dataset(api, tenant, "doomed"), create_dataset(api, tenant, "kept")
    docs = upload(api, tenant, doomed, ("a.txt", LONG_TEXT), ("b.txt", "short one"))
    (kept_doc,) = upload(api, tenant, kept, ("c.txt", LONG_TEXT))
    wait_indexed(api, [*docs, kept_doc])
    app_id = create_app(api, tenant)
    config = {"dataset_ids": [doomed, kept]}
    api.ok("PUT", f"/v1/apps/{app_id}/model-config", tenant, json={"model_config": config})
    assert joins(api, app_id) == {doomed, kept}
    kept_segments = count(api, DocumentSegment, dataset_id=kept)

    with captured_events(api.runtime) as events:
        response = api.call("DELETE", f"/v1/datasets/{doomed}", tenant)
    assert response.status_code == 204
    assert [p.dataset_id for p in emitted(events, "dataset_was_deleted")] == [doomed]

    record = finished_task(api, "relay.dataset.clean_dataset", tenant.id, doomed)
    assert record.queue == "dataset"
    assert {"segments", "documents", "joins"} <= set(record.result), record.result
    assert count(api, Dataset, id=doomed) == 0
    assert count(api, Document, dataset_id=doomed) == 0
    assert count(api, DocumentSegment, dataset_id=doomed) == 0
    assert joins(api, app_id) == {kept}
    assert count(api, DocumentSegment, dataset_id=kept) == kept_segments
    assert api.call("GET", f"/v1/datasets/{doomed}", tenant).status_code == 404


# --- message_was_created -------------------------------------------------------------------------


def test_message_was_created_spends_the_provider_quota(api: Api, tenant: TenantCredentials) -> None:
    app_id = create_app(api, tenant)
    path = f"/v1/apps/{app_id}/messages"
    before = quota_used(api, tenant.id)
    assert before == {(p, "trial"): 0 for p in api.runtime.settings.tenancy.default_quotas}

    with captured_events(api.runtime) as events:
        first = api.ok("POST", path, tenant, 201, json=message((3, 4)))
    assert [(p.message_id, p.total_tokens) for p in emitted(events, "message_was_created")] == [
        (first["id"], 7)
    ]
    conversation = first["conversation_id"]
    api.ok("POST", path, tenant, 201, json=message((10, 5), conversation_id=conversation))
    api.ok("POST", path, tenant, 201, json=message((1, 1), provider="anthropic"))
    api.ok("POST", path, tenant, 201, json=message((500, 500), provider="self-hosted"))
    assert quota_used(api, tenant.id) == {("openai", "trial"): 22, ("anthropic", "trial"): 2}
    assert count(api, Message, app_id=app_id) == 4

    # Over quota: the critical receiver refuses, and the whole request rolls back.
    with api.runtime.db.transaction() as session:
        session.execute(
            update(ProviderQuota)
            .where(ProviderQuota.tenant_id == tenant.id, ProviderQuota.provider == "openai")
            .values(quota_limit=28)
        )
    refused = api.call("POST", path, tenant, json=message((3, 4)))
    assert refused.status_code == 429
    assert refused.json["code"] == "quota_exceeded"
    assert quota_used(api, tenant.id)[("openai", "trial")] == 22
    assert count(api, Message, app_id=app_id) == 4
    assert count(api, Conversation, app_id=app_id) == 3, "the refused message's conversation too"
    api.ok("POST", path, tenant, 201, json=message((3, 3)))  # exactly the 6 units left
    assert quota_used(api, tenant.id)[("openai", "trial")] == 28
