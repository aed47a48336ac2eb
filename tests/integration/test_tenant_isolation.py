"""Tenant A's API key reaches none of tenant B's resources, on every tenant-scoped endpoint.

The cases come from ``app.url_map``: every ``/v1`` rule with path parameters (tenant management
and the diagnostic task routes aside), every method. Each parameter is filled from B's resources
by its name; a parameter this test does not know fails it, and so does a write endpoint without a
sample body, so a new endpoint cannot slip by uncovered. Every answer must be the 404 an unknown
id gets, word for word, and B's rows must be unchanged afterwards.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from relay.models import Base, WorkflowRun
from relay.services.run_streams import end_user_id
from tests.integration.test_api_support import Api, TenantCredentials, captured_events

# Tool providers are named by the tenant within its own namespace (the same name in another
# tenant is another provider, and a PUT creates the caller's own): their scoping is checked in
# test_api_tool_providers.py.
EXCLUDED_PREFIXES = ("/v1/tenants", "/v1/tool-providers")
IGNORED_METHODS = {"HEAD", "OPTIONS"}

GRAPH = {"nodes": [{"id": "start", "data": {"type": "start"}}], "edges": []}
# A valid body per write endpoint, so that a 404 (not a 400) is what isolation has to produce.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("PUT", "/v1/apps/<app_id>/model-config"): {"model_config": {"model": "x"}},
    ("PUT", "/v1/apps/<app_id>/workflows/draft"): {"graph": GRAPH},
    ("POST", "/v1/apps/<app_id>/workflows/publish"): {},
    ("POST", "/v1/apps/<app_id>/messages"): {
        "query": "q",
        "answer": "a",
        "message_tokens": 1,
        "answer_tokens": 1,
    },
    ("POST", "/v1/datasets/<dataset_id>/documents"): {"name": "n", "content": "text"},
    ("POST", "/v1/datasets/<dataset_id>/documents/batch-delete"): {"ids": [str(uuid.uuid4())]},
    ("POST", "/v1/datasets/<dataset_id>/documents/retry"): {"ids": [str(uuid.uuid4())]},
    ("PUT", "/v1/datasets/<dataset_id>/documents/<document_id>/pause"): {},
    ("PUT", "/v1/datasets/<dataset_id>/documents/<document_id>/resume"): {},
    ("PUT", "/v1/datasets/<dataset_id>/documents/<document_id>/enable"): {},
    ("PUT", "/v1/datasets/<dataset_id>/documents/<document_id>/disable"): {},
    ("POST", "/v1/dead-letters/<letter_id>/replay"): {},
    ("POST", "/v1/workflows/runs/<run_id>/stop"): {"user": "u"},
    ("POST", "/v1/workflows/runs/<run_id>/stream-token"): {"user": "u"},
    ("POST", "/v1/apps/<app_id>/api-keys"): {"name": "k"},
}
# Query strings some endpoints need besides their path (runs are read by their end user).
QUERIES: dict[tuple[str, str], dict[str, str]] = {
    ("GET", "/v1/workflows/runs/<run_id>"): {"user": "u"},
    ("GET", "/v1/workflows/runs/<run_id>/events"): {"user": "u"},
}
WRITE_METHODS = {"POST", "PUT", "PATCH"}
# A floor: the generator must find at least these (it finds new ones by itself).
KNOWN_ROUTES = {
    *BODIES,
    ("GET", "/v1/apps/<app_id>"),
    ("DELETE", "/v1/apps/<app_id>"),
    ("GET", "/v1/apps/<app_id>/messages"),
    ("GET", "/v1/datasets/<dataset_id>"),
    ("DELETE", "/v1/datasets/<dataset_id>"),
    ("GET", "/v1/datasets/<dataset_id>/documents"),
    ("GET", "/v1/datasets/<dataset_id>/documents/<document_id>"),
    ("DELETE", "/v1/datasets/<dataset_id>/documents/<document_id>"),
    ("GET", "/v1/dead-letters/<letter_id>"),
    ("GET", "/v1/tasks/<task_id>"),
    ("GET", "/v1/workflows/runs/<run_id>"),
    ("GET", "/v1/workflows/runs/<run_id>/events"),
    ("GET", "/v1/datasets/<dataset_id>/segments"),
    ("GET", "/v1/datasets/<dataset_id>/documents/<document_id>/status-log"),
}
CHAT_GRAPH = {
    "nodes": [
        {"id": "start", "data": {"type": "start"}},
        {"id": "answer", "data": {"type": "answer", "answer": "{{#sys.query#}}"}},
    ],
    "edges": [{"id": "e", "source": "start", "target": "answer", "sourceHandle": "source"}],
}


@dataclass(frozen=True)
class Case:
    method: str
    rule: str
    values: dict[str, str]

    @property
    def path(self) -> str:
        path = self.rule
        for name, value in self.values.items():
            path = path.replace(f"<{name}>", value)
        return path

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def _resources(api: Api, tenant: TenantCredentials) -> dict[str, str]:
    """One of each resource for ``tenant``, by the path parameter that names it."""
    app = api.ok("POST", "/v1/apps", tenant, 201, json={"name": "app", "mode": "workflow"})
    api.ok("PUT", f"/v1/apps/{app['id']}/workflows/draft", tenant, json={"graph": GRAPH})
    api.ok("POST", f"/v1/apps/{app['id']}/workflows/publish", tenant)
    api.ok(
        "POST",
        f"/v1/apps/{app['id']}/messages",
        tenant,
        201,
        json=BODIES[("POST", "/v1/apps/<app_id>/messages")],
    )
    dataset = api.ok("POST", "/v1/datasets", tenant, 201, json={"name": "kb"})
    upload = api.ok(
        "POST",
        f"/v1/datasets/{dataset['id']}/documents",
        tenant,
        201,
        json={"name": "doc", "content": "some words"},
    )
    letter_id = api.runtime.lifecycle.dead_letters.bury(
        task_id=str(uuid.uuid4()),
        task_name="relay.ping",
        queue="monitor",
        tenant_id=tenant.id,
        args=["x"],
        kwargs={},
        headers={},
        reason="exhausted",
        error="boom",
        traceback=None,
        attempts=3,
    )
    run = WorkflowRun(
        id=str(uuid.uuid4()),
        tenant_id=tenant.id,
        app_id=app["id"],
        triggered_from="app-run",
        version="published",
        graph=GRAPH,
        inputs={},
        status="succeeded",
        created_by_role="end_user",
        created_by=end_user_id(tenant.id, "u"),
    )
    api.add(run)
    chat = api.ok("POST", "/v1/apps", tenant, 201, json={"name": "chat", "mode": "advanced-chat"})
    api.ok("PUT", f"/v1/apps/{chat['id']}/workflows/draft", tenant, json={"graph": CHAT_GRAPH})
    api.ok("POST", f"/v1/apps/{chat['id']}/workflows/publish", tenant)
    message = api.ok(
        "POST",
        f"/v1/apps/{chat['id']}/messages",
        tenant,
        201,
        json=BODIES[("POST", "/v1/apps/<app_id>/messages")],
    )
    task = api.ok("POST", "/v1/ping-task", tenant, 202, json={"message": "private"})
    app_key = api.ok("POST", f"/v1/apps/{app['id']}/api-keys", tenant, 201, json={"name": "k"})
    return {
        "key_id": app_key["id"],
        "chat_app_id": chat["id"],
        "conversation_id": message["conversation_id"],
        "task_id": task["task_id"],
        "app_id": app["id"],
        "dataset_id": dataset["id"],
        "document_id": upload["documents"][0]["id"],
        "letter_id": letter_id,
        "run_id": run.id,
    }


def _cases(api: Api, own: dict[str, str], foreign: dict[str, str]) -> list[Case]:
    """Every tenant-scoped (method, rule), all parameters foreign, then each one alone."""
    cases: list[Case] = []
    for rule in api.app.url_map.iter_rules():
        if not rule.rule.startswith("/v1/") or not rule.arguments:
            continue
        if rule.rule.startswith(EXCLUDED_PREFIXES):
            continue
        unknown = sorted(set(rule.arguments) - set(foreign))
        assert not unknown, (
            f"{rule.rule}: no tenant-B resource for path parameter(s) {unknown}; "
            "teach test_tenant_isolation.py to create one"
        )
        for method in sorted((rule.methods or set()) - IGNORED_METHODS):
            if method in WRITE_METHODS:
                assert (method, rule.rule) in BODIES, (
                    f"{method} {rule.rule}: add a valid sample body to BODIES"
                )
            names = sorted(rule.arguments)
            cases.append(Case(method, rule.rule, {n: foreign[n] for n in names}))
            if len(names) > 1:
                # The caller's own parent with B's child (and so on): each must still be 404.
                for mixed in names:
                    values = {n: (foreign[n] if n == mixed else own[n]) for n in names}
                    cases.append(Case(method, rule.rule, values))
    return cases


def _ids_masked(answer: Any) -> str:
    return re.sub(
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "ID", str(answer)
    )


def _body_cases(
    own: dict[str, str], foreign: dict[str, str]
) -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """Requests that name another tenant's resource in their body (with an unknown-id twin)."""
    unknown = str(uuid.uuid4())
    run = {"user": "u", "response_mode": "blocking", "inputs": {}}
    chat = {**run, "query": "hi"}
    message = BODIES[("POST", "/v1/apps/<app_id>/messages")]
    return [
        ("POST", "/v1/workflows/run", {**run, "app_id": foreign["app_id"]},
         {**run, "app_id": unknown}),
        ("POST", "/v1/chat-messages", {**chat, "app_id": foreign["chat_app_id"]},
         {**chat, "app_id": unknown}),
        ("POST", "/v1/chat-messages",
         {**chat, "app_id": own["chat_app_id"], "conversation_id": foreign["conversation_id"]},
         {**chat, "app_id": own["chat_app_id"], "conversation_id": unknown}),
        ("POST", f"/v1/apps/{own['chat_app_id']}/messages",
         {**message, "conversation_id": foreign["conversation_id"]},
         {**message, "conversation_id": unknown}),
        ("POST", f"/v1/datasets/{own['dataset_id']}/documents/batch-delete",
         {"ids": [foreign["document_id"]]}, {"ids": [unknown]}),
        ("POST", f"/v1/datasets/{own['dataset_id']}/documents/retry",
         {"ids": [foreign["document_id"]]}, {"ids": [unknown]}),
    ]  # fmt: skip


def _snapshot(api: Api, tenant_id: str) -> dict[str, list[dict[str, Any]]]:
    """Every row the tenant owns (and its tenant row), table by table."""
    tables: dict[str, list[dict[str, Any]]] = {}
    with api.runtime.db.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            column = table.c.get("tenant_id") if table.name != "tenants" else table.c.id
            if column is None:
                continue
            rows = conn.execute(select(table).where(column == tenant_id)).mappings()
            tables[table.name] = sorted((dict(row) for row in rows), key=lambda r: str(r["id"]))
    return tables


def _send(api: Api, case: Case, tenant: TenantCredentials) -> Any:
    body = BODIES.get((case.method, case.rule)) if case.method in WRITE_METHODS else None
    query = QUERIES.get((case.method, case.rule))
    return api.call(case.method, case.path, tenant, json=body, query_string=query)


def test_a_tenant_gets_404_on_every_resource_of_another(api: Api) -> None:
    a = api.create_tenant("tenant a")
    b = api.create_tenant("tenant b")
    own = _resources(api, a)
    foreign = _resources(api, b)
    cases = _cases(api, own, foreign)
    covered = {(c.method, c.rule) for c in cases}
    assert covered >= KNOWN_ROUTES, sorted(KNOWN_ROUTES - covered)

    api.runtime.outbox.flush()  # batched "sent" marks of B's uploads land now, not mid-test
    before = _snapshot(api, b.id)
    for table in ("apps", "conversations", "messages", "datasets", "documents", "api_keys"):
        assert before[table], f"tenant B has no {table} to protect"
    with captured_events(api.runtime) as events:
        answered = 0
        for case in cases:
            response = _send(api, case, a)
            assert response.status_code == 404, (str(case), response.status_code, response.json)
            unknown = {name: str(uuid.uuid4()) for name in case.values}
            baseline = _send(api, Case(case.method, case.rule, unknown), a)
            assert baseline.status_code == 404, str(case)
            assert response.json == baseline.json, f"{case} differs from an unknown id"
            assert set(response.json) == {"code", "message", "details"}
            assert response.json["code"] == "not_found"
            answered += 1
        for method, path, body, unknown_body in _body_cases(own, foreign):
            response = api.call(method, path, a, json=body)
            baseline = api.call(method, path, a, json=unknown_body)
            assert response.status_code == baseline.status_code == 404, (path, body)
            # Ids the caller sent may be echoed (which ones were missing): compare without them.
            assert _ids_masked(response.json) == _ids_masked(baseline.json), (method, path, body)
            answered += 1
    print(f"cross-tenant cases answered like an unknown id: {answered}/{answered}")
    assert answered >= len(KNOWN_ROUTES)

    assert _snapshot(api, b.id) == before, "tenant B's data changed"
    touched = [(name, p) for name, p in events if getattr(p, "tenant_id", None) == b.id]
    assert touched == [], "an event about tenant B was emitted"
    # B still sees everything it had.
    assert api.ok("GET", f"/v1/apps/{foreign['app_id']}", b)["published_workflow"] == GRAPH
    document = f"/v1/datasets/{foreign['dataset_id']}/documents/{foreign['document_id']}"
    assert api.ok("GET", document, b)["name"] == "doc"


def test_lists_show_only_the_callers_resources(api: Api) -> None:
    a = api.create_tenant("tenant a")
    b = api.create_tenant("tenant b")
    own = _resources(api, a)
    foreign = _resources(api, b)
    for path, keys in [("/v1/apps", ("app_id", "chat_app_id")), ("/v1/datasets", ("dataset_id",))]:
        listed = api.ok("GET", path, a)
        assert sorted(item["id"] for item in listed["data"]) == sorted(own[k] for k in keys)
        assert listed["total"] == len(keys)
    documents = api.ok("GET", f"/v1/datasets/{own['dataset_id']}/documents", a)
    assert [d["id"] for d in documents["data"]] == [own["document_id"]]
    messages = api.ok("GET", f"/v1/apps/{own['app_id']}/messages", a)
    assert messages["total"] == 1
    assert foreign["app_id"] not in str(messages)


def test_the_tenant_comes_from_the_key_not_the_request(api: Api) -> None:
    a = api.create_tenant("tenant a")
    b = api.create_tenant("tenant b")
    spoofed = api.call(
        "POST",
        f"/v1/apps?tenant_id={b.id}",
        a,
        json={"name": "mine", "mode": "chat"},
        headers={"X-Tenant-Id": b.id},
    )
    assert spoofed.status_code == 201
    assert api.ok("GET", "/v1/apps", b)["total"] == 0
    smuggled = api.call(
        "POST", "/v1/apps", a, json={"name": "x", "mode": "chat", "tenant_id": b.id}
    )
    assert smuggled.status_code == 400
