"""While Redis is down the API answers 503 with Retry-After and a JSON body, never 500; once
Redis is back the same process serves again without a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from relay.config import Settings
from relay.errors import BrokerUnavailable
from relay.migrations import upgrade
from tests.integration.test_api_support import Api, TenantCredentials, admin_api
from tests.outages import OwnPostgres, OwnRedis
from tests.waiting import wait_until

PROBES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/v1/ping-task", {"message": "outage"}),
    ("POST", "/v1/apps", {"name": "during the outage", "mode": "chat"}),
    ("GET", "/v1/apps", None),
    ("POST", "/v1/datasets", {"name": "docs"}),
]


def _probe(api: Api, tenant: TenantCredentials) -> list[tuple[str, int, Any]]:
    answers = []
    for method, path, body in PROBES:
        response = api.call(method, path, tenant, json=body)
        answers.append((f"{method} {path}", response.status_code, response))
    return answers


def test_redis_outage_is_a_503_and_recovery_needs_no_restart(
    settings: Settings, tmp_path: Path
) -> None:
    server = OwnRedis(tmp_path / "redis").start()
    own = settings.model_copy(
        update={"redis": settings.redis.model_copy(update={"url": server.url})}
    )
    try:
        with admin_api(own) as api:
            tenant = api.create_tenant()
            assert [a[:2] for a in _probe(api, tenant) if a[1] >= 300] == []

            server.kill()
            answers = _probe(api, tenant)
            assert not [a for a in answers if a[1] >= 500 and a[1] != 503], answers
            unavailable = [response for _, status, response in answers if status == 503]
            assert unavailable, "nothing needed Redis?"
            for response in unavailable:
                assert response.headers["Retry-After"].isdigit()
                assert response.json["code"].endswith("unavailable")

            server.start()
            assert [a[:2] for a in _probe(api, tenant) if a[1] >= 300] == []
    finally:
        server.stop()


def test_database_outage_is_a_503_and_recovery_needs_no_restart(settings: Settings) -> None:
    server = OwnPostgres().init().start()
    own = settings.model_copy(
        update={"database": settings.database.model_copy(update={"url": server.url})}
    )
    try:
        upgrade(server.url)
        with admin_api(own) as api:
            tenant = api.create_tenant()
            assert [a[:2] for a in _probe(api, tenant) if a[1] >= 300] == []

            server.stop()  # immediate: like a crash, every pooled connection is cut
            answers = _probe(api, tenant)
            # Every probe needs the database, if only to authenticate the tenant's key: all 503.
            assert [a[:2] for a in answers if a[1] != 503] == []
            for _, status, response in answers:
                if status == 503:
                    assert response.headers["Retry-After"].isdigit()
                    assert response.json["code"] == "database_unavailable"

            server.start()
            assert [a[:2] for a in _probe(api, tenant) if a[1] >= 300] == []
    finally:
        server.remove()


def test_the_broker_circuit_opens_while_redis_is_down_and_closes_after(
    settings: Settings, tmp_path: Path
) -> None:
    server = OwnRedis(tmp_path / "redis").start()
    own = settings.model_copy(
        update={"redis": settings.redis.model_copy(update={"url": server.url})}
    )
    try:
        with admin_api(own) as api:
            celery = api.runtime.celery
            tenant = api.create_tenant()
            server.kill()
            errors = []
            for _ in range(6):
                try:
                    celery.send_task("relay.ping", args=["x"], queue="monitor")
                except BrokerUnavailable as exc:
                    errors.append(exc)
            assert len(errors) == 6
            assert isinstance(errors[-1].details, dict)
            assert errors[-1].details["circuit"] == "broker"  # refused without trying
            metrics = api.client.get("/metrics").get_data(as_text=True)
            assert 'relay_circuit_state{circuit="broker"} 2.0' in metrics
            answer = api.call("POST", "/v1/ping-task", tenant, json={"message": "open"})
            assert answer.status_code == 503
            assert answer.json["code"] in ("broker_unavailable", "redis_unavailable")

            server.start()
            wait_until(
                lambda: (
                    api.call("POST", "/v1/ping-task", tenant, json={"message": "x"}).status_code
                    == 202
                ),
                timeout=30,
                what="the circuit to close after its reset timeout",
            )
            assert api.runtime.breakers.state("broker") == "closed"
    finally:
        server.stop()
