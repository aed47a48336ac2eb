"""``/v1/dead-letters``: a tenant lists, reads and replays its own dead letters, and only those."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from celery.result import AsyncResult

from relay.models import ProcessedKey
from relay.runtime import Runtime
from tests.conftest import run_worker
from tests.integration.test_api_support import Api, TenantCredentials

TRACEBACK = """Traceback (most recent call last):
  File "/srv/relay/tasks/base.py", line 78, in __call__
    result = super().__call__(*args, **kwargs)
  File "/srv/relay/tasks/ping.py", line 17, in ping
    raise ConnectionError("broker reset the connection")
ConnectionError: broker reset the connection
"""


def bury(
    runtime: Runtime,
    tenant_id: str | None,
    task_name: str = "relay.ping",
    args: list[Any] | None = None,
    *,
    key: str | None = None,
) -> str:
    """A dead letter as the task lifecycle stores one after the last attempt failed."""
    task_id = str(uuid.uuid4())
    return runtime.lifecycle.dead_letters.bury(
        task_id=task_id,
        task_name=task_name,
        queue="monitor",
        tenant_id=tenant_id,
        args=args if args is not None else ["hello"],
        kwargs={},
        headers={"idempotency_key": key or f"outbox:{task_id}", "tenant_id": tenant_id},
        reason="exhausted",
        error="ConnectionError: broker reset the connection",
        traceback=TRACEBACK,
        attempts=3,
    )


@pytest.fixture
def tenants(api: Api) -> tuple[TenantCredentials, TenantCredentials]:
    return api.create_tenant("acme"), api.create_tenant("globex")


def test_a_tenant_lists_its_own_letters_in_pages(
    api: Api, tenants: tuple[TenantCredentials, TenantCredentials]
) -> None:
    acme, globex = tenants
    mine = [bury(api.runtime, acme.id, args=[f"m{i}"]) for i in range(3)]
    theirs = bury(api.runtime, globex.id)
    bury(api.runtime, None)  # a system task's letter belongs to no tenant

    first = api.ok("GET", "/v1/dead-letters?limit=2", acme)
    assert (first["limit"], first["offset"], first["total"], first["has_more"]) == (2, 0, 3, True)
    second = api.ok("GET", "/v1/dead-letters?limit=2&offset=2", acme)
    assert (second["total"], second["has_more"], len(second["data"])) == (3, False, 1)
    listed = first["data"] + second["data"]
    assert [letter["id"] for letter in listed] == list(reversed(mine)), "newest first"
    entry = listed[0]
    assert entry["task_name"] == "relay.ping"
    assert entry["args"] == ["m2"]
    assert entry["kwargs"] == {}
    assert entry["tenant_id"] == acme.id
    assert entry["reason"] == "exhausted"
    assert entry["attempts"] == 3
    assert entry["replayed_at"] is None
    assert "traceback" not in entry, "lists stay small; the detail has the traceback"

    other = api.ok("GET", "/v1/dead-letters", globex)
    assert [letter["id"] for letter in other["data"]] == [theirs]


def test_detail_has_the_traceback_and_other_tenants_get_404(
    api: Api, tenants: tuple[TenantCredentials, TenantCredentials]
) -> None:
    acme, globex = tenants
    letter_id = bury(api.runtime, acme.id)
    detail = api.ok("GET", f"/v1/dead-letters/{letter_id}", acme)
    assert detail["traceback"] == TRACEBACK
    assert detail["error"] == "ConnectionError: broker reset the connection"

    for method, path in [
        ("GET", f"/v1/dead-letters/{letter_id}"),
        ("POST", f"/v1/dead-letters/{letter_id}/replay"),
    ]:
        response = api.call(method, path, globex)
        assert response.status_code == 404, path
        assert response.json["code"] == "not_found"
    missing = api.call("GET", "/v1/dead-letters/00000000-0000-4000-8000-000000000000", acme)
    assert missing.status_code == 404
    # The 404s changed nothing: the letter is still pending for its owner.
    assert api.ok("GET", f"/v1/dead-letters/{letter_id}", acme)["replayed_at"] is None


def test_replay_runs_the_task_on_a_worker_and_a_second_replay_conflicts(
    api: Api, tenants: tuple[TenantCredentials, TenantCredentials]
) -> None:
    acme, _ = tenants
    letter_id = bury(api.runtime, acme.id, args=["replayed over HTTP"])

    accepted = api.ok("POST", f"/v1/dead-letters/{letter_id}/replay", acme, status=202)
    task_id = accepted["task_id"]
    with run_worker(api.runtime, queues=["monitor"]):
        result = AsyncResult(task_id, app=api.runtime.celery).get(timeout=30)
    assert result["pong"] == "replayed over HTTP"

    again = api.call("POST", f"/v1/dead-letters/{letter_id}/replay", acme)
    assert again.status_code == 409
    assert again.json["code"] == "conflict"
    assert again.json["details"] == {"replayed_task_id": task_id}

    detail = api.ok("GET", f"/v1/dead-letters/{letter_id}", acme)
    assert detail["replayed_task_id"] == task_id
    assert detail["replayed_at"] is not None
    assert api.ok("GET", "/v1/dead-letters?replayed=true", acme)["total"] == 1
    assert api.ok("GET", "/v1/dead-letters?replayed=false", acme)["total"] == 0


def test_replay_keeps_the_original_idempotency_key(
    api: Api, tenants: tuple[TenantCredentials, TenantCredentials]
) -> None:
    """A replayed canary applies its effect under the key of the task that died."""
    acme, _ = tenants
    letter_id = bury(api.runtime, acme.id, "relay.canary", ["drill"], key="canary-key-1")
    task_id = api.ok("POST", f"/v1/dead-letters/{letter_id}/replay", acme, status=202)["task_id"]
    with run_worker(api.runtime, queues=["monitor"]):
        applied = AsyncResult(task_id, app=api.runtime.celery).get(timeout=30)
    assert applied is True
    assert [row.task_name for row in api.rows(ProcessedKey, idempotency_key="canary-key-1")] == [
        "relay.canary"
    ]


def test_bad_input_and_missing_credentials(
    api: Api, tenants: tuple[TenantCredentials, TenantCredentials]
) -> None:
    acme, _ = tenants
    assert api.call("GET", "/v1/dead-letters").status_code == 401
    assert api.call("POST", "/v1/dead-letters/x/replay").status_code == 401
    for query in ("limit=0", "limit=101", "offset=-1", "limit=ten", "replayed=maybe"):
        response = api.call("GET", f"/v1/dead-letters?{query}", acme)
        assert response.status_code == 400, query
        assert response.json["code"] == "invalid_input"


def test_the_endpoints_are_in_the_openapi_document(api: Api) -> None:
    paths = api.client.get("/openapi.json").json["paths"]
    assert set(paths["/v1/dead-letters"]) == {"get"}
    assert set(paths["/v1/dead-letters/{letter_id}"]) == {"get"}
    replay = paths["/v1/dead-letters/{letter_id}/replay"]["post"]
    assert {"202", "401", "404", "409"} <= set(replay["responses"])
    assert replay["security"] == [{"ApiKey": []}]
