"""Admission: over the plan's submission rate, a workflow run is refused with 429 and
``Retry-After``, and nothing is created or enqueued."""

from __future__ import annotations

from sqlalchemy import func, select

from relay.app_factory import create_app
from relay.config import Settings
from relay.models import Base, OutboxMessage, WorkflowRun
from relay.services.app_service import AppService
from relay.services.auth_service import AuthService
from relay.services.tenant_service import TenantService
from relay.services.workflow_run_service import WorkflowRunService
from tests.conftest import migrated_external_db_in_use
from tests.integration.streaming.support import workflow_graph


def _count(runtime: object, model: type) -> int:
    with runtime.db.session() as session:  # type: ignore[attr-defined]
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_runs_over_the_rate_get_429_with_retry_after(settings: Settings) -> None:
    tight = settings.model_copy(
        update={
            "scheduling": settings.scheduling.model_copy(
                update={"rate_burst": {"sandbox": 2}, "rate_per_second": {"sandbox": 0.01}}
            )
        }
    )
    app = create_app(tight)
    runtime = app.extensions["relay"]
    if not migrated_external_db_in_use(tight):
        Base.metadata.create_all(runtime.db.engine)
    tenant = TenantService(runtime).create("limited", "sandbox")
    key = AuthService(runtime).issue_key(tenant.id, "k").key
    apps = AppService(runtime)
    app_id = apps.create(tenant.id, name="flow", mode="workflow").id
    apps.sync_draft_workflow(tenant.id, app_id, workflow_graph())
    apps.publish_workflow(tenant.id, app_id)

    runs = WorkflowRunService(runtime)
    for _ in range(2):
        runs.start(tenant.id, app_id, user="u1", inputs={"topic": "x"})
    assert _count(runtime, WorkflowRun) == 2

    client = app.test_client()
    response = client.post(
        "/v1/workflows/run",
        json={
            "app_id": app_id,
            "inputs": {"topic": "x"},
            "user": "u1",
            "response_mode": "blocking",
        },
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 429, response.get_json()
    assert response.get_json()["code"] == "quota_exceeded"
    assert int(response.headers["Retry-After"]) >= 1
    assert _count(runtime, WorkflowRun) == 2, "a refused run leaves no record"
    with runtime.db.session() as session:
        queued = session.scalar(
            select(func.count()).where(OutboxMessage.task_name == "relay.workflow.run")
        )
    assert queued == 2, "and enqueues nothing"
    runtime.close()


def test_uploads_over_the_rate_get_429_and_create_nothing(settings: Settings) -> None:
    tight = settings.model_copy(
        update={
            "scheduling": settings.scheduling.model_copy(
                update={
                    "rate_burst": {"professional": 3},
                    "rate_per_second": {"professional": 0.01},
                }
            )
        }
    )
    app = create_app(tight)
    runtime = app.extensions["relay"]
    if not migrated_external_db_in_use(tight):
        Base.metadata.create_all(runtime.db.engine)
    tenant = TenantService(runtime).create("uploader", "professional")
    key = AuthService(runtime).issue_key(tenant.id, "k").key
    client = app.test_client()
    headers = {"Authorization": f"Bearer {key}"}
    dataset = client.post("/v1/datasets", json={"name": "kb"}, headers=headers).get_json()
    url = f"/v1/datasets/{dataset['id']}/documents"
    for n in range(3):
        created = client.post(url, json={"name": f"d{n}", "content": "text"}, headers=headers)
        assert created.status_code == 201, created.get_json()

    refused = client.post(url, json={"name": "d3", "content": "text"}, headers=headers)
    assert refused.status_code == 429, refused.get_json()
    assert refused.get_json()["code"] == "quota_exceeded"
    assert int(refused.headers["Retry-After"]) >= 1
    listed = client.get(url, headers=headers).get_json()
    assert listed["total"] == 3, "a refused upload creates no document"
    runtime.close()
