"""Under resource pressure a real worker stops consuming its low-priority queue (its messages
wait) and the API refuses new work with 429; both undo themselves when the pressure ends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from celery.exceptions import TimeoutError as CeleryTimeout

from relay.app_factory import create_app
from relay.composition import create_runtime
from relay.config import Settings
from relay.runtime import Runtime
from relay.testing import ScriptedSampler
from tests.conftest import migrated_external_db_in_use, run_worker
from tests.integration.test_api_support import Api, admin_settings
from tests.waiting import wait_until


@pytest.fixture
def sampler() -> ScriptedSampler:
    return ScriptedSampler()


@pytest.fixture
def pressured(settings: Settings, sampler: ScriptedSampler) -> Iterator[Runtime]:
    configured = admin_settings(settings).model_copy(
        update={
            "pressure": settings.pressure.model_copy(
                # Ticks come from the test; the helper's own samples (same sampler) agree.
                update={"enabled": True, "sustain": 1, "interval": 3600.0}
            )
        }
    )
    runtime = create_runtime(configured, sampler=sampler)
    if not migrated_external_db_in_use(configured):
        from relay.models.base import Base

        Base.metadata.create_all(runtime.db.engine)
    try:
        yield runtime
    finally:
        runtime.close()


def consumed(runtime: Runtime, hostname: str) -> set[str]:
    replies = runtime.celery.control.inspect(destination=[hostname], timeout=1.0).active_queues()
    return {queue["name"] for queue in (replies or {}).get(hostname, [])}


def test_a_low_priority_queue_waits_under_pressure_and_resumes_after(
    pressured: Runtime, sampler: ScriptedSampler
) -> None:
    runtime = pressured
    assert runtime.pressure is not None
    with run_worker(runtime, queues=["monitor", "dataset"]) as worker:
        host = worker.hostname
        wait_until(lambda: consumed(runtime, host) == {"monitor", "dataset"}, timeout=20)

        sampler.set(cpu=0.99)
        runtime.pressure.tick()
        wait_until(lambda: consumed(runtime, host) == {"monitor"}, timeout=20, what="shed")

        waiting = runtime.celery.send_task("relay.ping", kwargs={"message": "low"}, queue="dataset")
        served = runtime.celery.send_task("relay.ping", kwargs={"message": "hi"}, queue="monitor")
        assert served.get(timeout=20)["pong"] == "hi", "other queues are still served"
        with pytest.raises(CeleryTimeout):
            waiting.get(timeout=1.5)

        sampler.set()
        runtime.pressure.tick()
        wait_until(lambda: "dataset" in consumed(runtime, host), timeout=20, what="resumed")
        assert waiting.get(timeout=20)["pong"] == "low", "the waiting message ran once resumed"


def test_admission_answers_429_under_pressure_and_admits_after(
    pressured: Runtime, sampler: ScriptedSampler
) -> None:
    assert pressured.pressure is not None
    api = Api(create_app(runtime=pressured))
    tenant = api.create_tenant()
    sampler.set(disk=0.99)
    pressured.pressure.tick()
    refused = api.call("POST", "/v1/ping-task", tenant, json={"message": "x"})
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == str(pressured.settings.pressure.retry_after)
    assert refused.json["code"] == "overloaded"
    assert "resource pressure" in refused.json["message"]
    ready = api.call("GET", "/health/ready").json["components"]["pressure"]
    assert ready["level"] == "warning"
    assert ready["value"] == ["disk"]
    assert ready["threshold"]["disk"] == {"high": 0.95, "low": 0.9}

    sampler.set()
    pressured.pressure.tick()
    assert api.call("POST", "/v1/ping-task", tenant, json={"message": "x"}).status_code == 202
    assert api.call("GET", "/health/ready").json["components"]["pressure"]["level"] == "healthy"
