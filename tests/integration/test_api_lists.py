"""Lists of runs and task records: filters, pages, tenant scope, and the OpenAPI document."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from relay.models import CreatorRole, WorkflowRun
from relay.models.task_record import TaskRecord
from relay.services.run_streams import end_user_id
from tests.integration.test_api_support import Api, TenantCredentials

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _run(tenant: str, app: str, status: str, user: str, minutes: int) -> WorkflowRun:
    return WorkflowRun(
        id=str(uuid.uuid4()), tenant_id=tenant, app_id=app, triggered_from="app-run",
        version="published", graph={}, inputs={}, status=status,
        created_by_role=CreatorRole.END_USER, created_by=end_user_id(tenant, user),
        created_at=T0 + timedelta(minutes=minutes),
    )  # fmt: skip


def _task(tenant: str | None, name: str, status: str, minutes: int) -> TaskRecord:
    return TaskRecord(
        id=str(uuid.uuid4()), name=name, queue="q", tenant_id=tenant, args=["secret"], kwargs={},
        status=status, attempts=1, error="Boom: it broke\nTraceback ...",
        enqueued_at=T0 + timedelta(minutes=minutes),
    )  # fmt: skip


def _ids(page: dict[str, object]) -> list[str]:
    return [str(item["id"]) for item in page["data"]]  # type: ignore[attr-defined]


def test_runs_list_filters_pages_and_stays_in_the_tenant(api: Api) -> None:
    acme, globex = api.create_tenant("acme"), api.create_tenant("globex")
    runs = [
        _run(acme.id, "app-a", "succeeded", "ann", 0),
        _run(acme.id, "app-a", "failed", "bob", 1),
        _run(acme.id, "app-b", "succeeded", "ann", 2),
        _run(globex.id, "app-g", "succeeded", "ann", 3),
    ]
    api.add(*runs)

    def ids(query: str = "", who: TenantCredentials = acme) -> list[str]:
        return _ids(api.ok("GET", f"/v1/workflows/runs{query}", who))

    assert ids() == [runs[2].id, runs[1].id, runs[0].id], "newest first, own tenant only"
    assert ids("?app_id=app-a") == [runs[1].id, runs[0].id]
    assert ids("?status=succeeded") == [runs[2].id, runs[0].id]
    assert ids("?user=ann") == [runs[2].id, runs[0].id]
    assert ids("?created_after=2026-12-01T12:01:00Z&created_before=2026-12-01T12:02:00Z") == [
        runs[1].id
    ]
    assert ids(who=globex) == [runs[3].id]
    page = api.ok("GET", "/v1/workflows/runs?limit=2&offset=1", acme)
    assert (_ids(page), page["total"], page["has_more"]) == ([runs[1].id, runs[0].id], 3, False)
    assert page["data"][0]["created_by"] == end_user_id(acme.id, "bob")
    for bad in ("?status=finished", "?created_after=yesterday", "?limit=0", "?colour=red"):
        assert api.call("GET", f"/v1/workflows/runs{bad}", acme).status_code == 400, bad
    assert api.call("GET", "/v1/workflows/runs").status_code == 401


def test_task_list_filters_and_shows_no_arguments(api: Api) -> None:
    acme, globex = api.create_tenant("acme"), api.create_tenant("globex")
    tasks = [
        _task(acme.id, "relay.workflow.run", "SUCCESS", 0),
        _task(acme.id, "relay.document.index", "FAILURE", 1),
        _task(globex.id, "relay.workflow.run", "SUCCESS", 2),
        _task(None, "relay.monitor.queues", "SUCCESS", 3),
    ]
    api.add(*tasks)

    def ids(query: str = "", who: TenantCredentials = acme) -> list[str]:
        return _ids(api.ok("GET", f"/v1/tasks{query}", who))

    assert ids() == [tasks[1].id, tasks[0].id]
    assert ids("?name=relay.workflow.run") == [tasks[0].id]
    assert ids("?status=FAILURE") == [tasks[1].id]
    assert ids("?enqueued_before=2026-12-01T12:01:00Z") == [tasks[0].id]
    assert ids(who=globex) == [tasks[2].id]
    failed = api.ok("GET", "/v1/tasks?status=FAILURE", acme)["data"][0]
    assert failed["error"] == "Boom: it broke"
    assert "args" not in failed
    assert "secret" not in str(api.ok("GET", "/v1/tasks", acme))
    assert api.call("GET", "/v1/tasks?status=DONE", acme).status_code == 400


def test_lists_are_in_the_openapi_document(api: Api) -> None:
    paths = api.client.get("/openapi.json").json["paths"]
    for path, params in (
        ("/v1/workflows/runs", {"app_id", "status", "user", "created_after", "limit", "offset"}),
        ("/v1/tasks", {"name", "status", "enqueued_after", "limit", "offset"}),
        ("/v1/apps/import", {"publish", "name"}),
    ):
        operation = next(iter(paths[path].values()))
        assert params <= {p["name"] for p in operation["parameters"]}, path
    assert "get" in paths["/v1/apps/{app_id}/export"]
