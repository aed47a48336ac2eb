"""A task travels from the API through a real Celery worker and back, for its tenant only."""

from __future__ import annotations

from typing import Any

import pytest

from relay.config import Settings
from tests.integration.test_api_support import Api, TenantCredentials, admin_api


@pytest.fixture
def tenant(api: Api) -> TenantCredentials:
    return api.create_tenant("pinger")


def test_ping_task_round_trip(api: Api, tenant: TenantCredentials) -> None:
    from tests.conftest import run_worker

    with run_worker(api.runtime, queues=["monitor"]):
        response = api.call("POST", "/v1/ping-task", tenant, json={"message": "hello"})
        assert response.status_code == 202
        task_id = response.json["task_id"]

        result = api.call("GET", f"/v1/tasks/{task_id}?wait=20", tenant)
    assert result.status_code == 200
    assert result.json["state"] == "SUCCESS"
    assert result.json["result"]["pong"] == "hello"


def test_task_endpoints_need_an_api_key(api: Api, tenant: TenantCredentials) -> None:
    anonymous = api.call("POST", "/v1/ping-task", json={"message": "x"})
    assert anonymous.status_code == 401
    assert anonymous.json["code"] == "unauthorized"
    task_id = api.ok("POST", "/v1/ping-task", tenant, 202, json={})["task_id"]
    assert api.call("GET", f"/v1/tasks/{task_id}").status_code == 401
    bad_key = {"Authorization": "Bearer relay-not-a-key"}
    assert api.call("GET", f"/v1/tasks/{task_id}", headers=bad_key).status_code == 401


def test_another_tenants_task_answers_like_an_unknown_id(
    api: Api, tenant: TenantCredentials
) -> None:
    other = api.create_tenant("other")
    task_id = api.ok("POST", "/v1/ping-task", tenant, 202, json={"message": "secret"})["task_id"]
    foreign = api.call("GET", f"/v1/tasks/{task_id}", other)
    unknown_id = "00000000-0000-4000-8000-000000000000"
    unknown = api.call("GET", f"/v1/tasks/{unknown_id}", other)
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json["code"] == unknown.json["code"] == "not_found"
    assert foreign.json["message"].replace(task_id, "ID") == unknown.json["message"].replace(
        unknown_id, "ID"
    )
    assert "secret" not in foreign.get_data(as_text=True)
    assert api.call("GET", f"/v1/tasks/{task_id}", tenant).status_code == 200


def test_pings_are_admitted_like_other_submissions(settings: Settings) -> None:
    tight = settings.model_copy(
        update={
            "scheduling": settings.scheduling.model_copy(
                update={
                    "rate_burst": dict.fromkeys(settings.scheduling.rate_burst, 2),
                    "rate_per_second": dict.fromkeys(settings.scheduling.rate_burst, 0.01),
                }
            )
        }
    )
    with admin_api(tight) as api:
        tenant = api.create_tenant("busy")
        other = api.create_tenant("quiet")
        for _ in range(2):
            api.ok("POST", "/v1/ping-task", tenant, 202, json={})
        refused = api.call("POST", "/v1/ping-task", tenant, json={})
        assert refused.status_code == 429
        assert refused.json["code"] == "quota_exceeded"
        assert int(refused.headers["Retry-After"]) >= 1
        issued = api.runtime.redis.keys("relay:ping:issued:*")
        assert len(issued) == 2, "a refused ping enqueued nothing"
        # The bucket is the tenant's own: another tenant is admitted.
        api.ok("POST", "/v1/ping-task", other, 202, json={})


def test_waiting_for_a_task_nobody_runs_times_out_cleanly(
    api: Api, tenant: TenantCredentials
) -> None:
    task_id = api.ok("POST", "/v1/ping-task", tenant, 202, json={})["task_id"]
    response = api.call("GET", f"/v1/tasks/{task_id}?wait=0.3", tenant)
    assert response.status_code == 200
    assert response.json["state"] == "PENDING"
    assert api.call("GET", f"/v1/tasks/{task_id}?wait=99", tenant).status_code == 400
    assert api.call("GET", f"/v1/tasks/{task_id}?wait=soon", tenant).status_code == 400


def test_unknown_and_malformed_task_ids(api: Api, tenant: TenantCredentials) -> None:
    assert api.call("GET", "/v1/tasks/not-a-uuid", tenant).status_code == 400
    missing = api.call("GET", "/v1/tasks/00000000-0000-4000-8000-000000000000", tenant)
    assert missing.status_code == 404
    assert missing.json["code"] == "not_found"


def test_bad_ping_input_is_a_clear_400(api: Api, tenant: TenantCredentials) -> None:
    response = api.call("POST", "/v1/ping-task", tenant, json={"message": "x" * 1001})
    assert response.status_code == 400
    assert response.json["code"] == "invalid_input"
    assert response.json["details"][0]["field"] == "message"
    assert api.call("POST", "/v1/ping-task", tenant, json={"unexpected": 1}).status_code == 400


def test_health_reports_each_component(client: Any, runtime: Any) -> None:
    response = client.get("/health")
    assert response.status_code == 503, "no worker runs yet"
    assert response.json["failing"] == ["workers"]
    assert response.json["components"]["redis"]["ok"]
    assert response.json["components"]["database"]["ok"]
    # Code nodes can run isolated on this host (CI installs bubblewrap).
    assert response.json["components"]["sandbox"]["ok"], response.json["components"]["sandbox"]
    assert response.json["components"]["sandbox"]["mode"] == "bubblewrap"

    from tests.conftest import run_worker

    with run_worker(runtime):
        healthy = client.get("/health")
        assert healthy.status_code == 200, healthy.json
        monitor = healthy.json["components"]["workers"]["queues"]["monitor"]
        assert len(monitor) == 1
    # A clean shutdown withdraws the worker's presence at once.
    assert client.get("/health").status_code == 503


def test_metrics_are_exposed(client: Any) -> None:
    client.get("/health")
    body = client.get("/metrics").get_data(as_text=True)
    assert "relay_http_requests_total" in body
