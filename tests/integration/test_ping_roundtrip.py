"""A task travels from the API through a real Celery worker and back."""

from __future__ import annotations

from typing import Any


def test_ping_task_round_trip(client: Any, worker: Any) -> None:
    response = client.post("/v1/ping-task", json={"message": "hello"})
    assert response.status_code == 202
    task_id = response.json["task_id"]

    result = client.get(f"/v1/tasks/{task_id}?wait=20")
    assert result.status_code == 200
    assert result.json["state"] == "SUCCESS"
    assert result.json["result"]["pong"] == "hello"


def test_waiting_for_a_task_nobody_runs_times_out_cleanly(client: Any) -> None:
    task_id = client.post("/v1/ping-task", json={}).json["task_id"]
    response = client.get(f"/v1/tasks/{task_id}?wait=0.3")
    assert response.status_code == 200
    assert response.json["state"] == "PENDING"
    assert client.get(f"/v1/tasks/{task_id}?wait=99").status_code == 400
    assert client.get(f"/v1/tasks/{task_id}?wait=soon").status_code == 400


def test_unknown_and_malformed_task_ids(client: Any) -> None:
    assert client.get("/v1/tasks/not-a-uuid").status_code == 400
    missing = client.get("/v1/tasks/00000000-0000-4000-8000-000000000000")
    assert missing.status_code == 404
    assert missing.json["code"] == "not_found"


def test_bad_ping_input_is_a_clear_400(client: Any) -> None:
    response = client.post("/v1/ping-task", json={"message": "x" * 1001})
    assert response.status_code == 400
    assert response.json["code"] == "invalid_input"
    assert response.json["details"][0]["field"] == "message"
    assert client.post("/v1/ping-task", json={"unexpected": 1}).status_code == 400


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
