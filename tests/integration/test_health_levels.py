"""``/health/live`` and ``/health/ready``: components with levels, values and thresholds, on real
Redis and a real database (``/health`` keeps its own tests)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from relay.events.outbox import outbox_row
from relay.models import utcnow
from relay.monitoring.levels import Level, ReadinessChecker, Thresholds, judge, worst
from relay.runtime import Runtime
from tests.conftest import EXTERNAL_REDIS, run_worker
from tests.waiting import wait_until

# This machine's own CPU and memory use must not decide these tests.
CALM = Thresholds(resources=(2.0, 3.0))


def _checker(runtime: Runtime, thresholds: Thresholds = CALM) -> ReadinessChecker:
    return ReadinessChecker(
        runtime.redis,
        runtime.db,
        runtime.presence,
        runtime.bus,
        var_dir=runtime.settings.var_dir,
        code_sandbox=runtime.settings.workflow.code_sandbox,
        thresholds=thresholds,
    )


def test_judging_by_thresholds() -> None:
    assert judge(0.5, 0.8, 0.95) is Level.HEALTHY
    assert judge(0.8, 0.8, 0.95) is Level.WARNING
    assert judge(0.99, 0.8, 0.95) is Level.CRITICAL
    assert worst([Level.HEALTHY, Level.CRITICAL, Level.WARNING]) is Level.CRITICAL
    assert worst([]) is Level.HEALTHY


def test_live_answers_and_ready_is_critical_without_consumers(client: Any) -> None:
    live = client.get("/health/live")
    assert live.status_code == 200
    assert live.json["status"] == "healthy"
    assert live.json["pid"] > 0

    ready = client.get("/health/ready")
    assert ready.status_code == 503
    body = ready.json
    assert body["ready"] is False
    components = body["components"]
    assert set(components) == {
        "redis", "database", "workers", "resources", "events", "outbox", "sandbox", "spool",
        "pressure",
    }  # fmt: skip
    workers = components["workers"]
    assert workers["level"] == "critical"
    assert "no live consumer" in workers["message"]
    assert all(count == 0 for count in workers["value"].values())
    assert components["database"]["level"] in {"healthy", "warning"}
    assert components["database"]["threshold"] == {"warning": 250.0, "critical": 2000.0}
    for name in ("resources", "events", "outbox"):
        assert set(components[name]["threshold"]) == {"warning", "critical"}
    assert set(components["resources"]["value"]) == {"cpu", "memory", "disk"}
    assert "used_memory" in components["redis"]
    # /health is unchanged.
    assert client.get("/health").status_code == 503


def test_ready_with_consumers_and_an_old_outbox_row_goes_critical(runtime: Runtime) -> None:
    checker = _checker(runtime)
    with run_worker(runtime):
        report = wait_until(
            lambda: (r := checker.ready()).components[2].level is Level.HEALTHY and r,
            what="every routed queue consumed",
        )
        levels = {c.name: c.level for c in report.components}
        assert levels["workers"] is Level.HEALTHY
        assert levels["outbox"] is Level.HEALTHY
        assert report.ready

        # A committed row nobody published for ten minutes: the relay is not keeping up.
        row = outbox_row("relay.ping", args=["stuck"])
        row.created_at = utcnow() - timedelta(minutes=10)
        with runtime.db.session() as session:
            session.add(row)
            session.commit()
        outbox = next(c for c in checker.ready().components if c.name == "outbox")
        assert outbox.level is Level.CRITICAL
        assert outbox.value >= 600
        assert outbox.details["pending"] == 1


@pytest.mark.skipif(
    bool(EXTERNAL_REDIS), reason="changes maxmemory: only on the suite's private Redis"
)
def test_redis_memory_is_judged_against_maxmemory(runtime: Runtime) -> None:
    used = int(runtime.redis.info("memory")["used_memory"])  # type: ignore[index]
    checker = _checker(runtime, Thresholds(resources=(2.0, 3.0), redis_memory=(0.5, 0.9)))
    original = runtime.redis.config_get("maxmemory")["maxmemory"]
    try:
        runtime.redis.config_set("maxmemory", str(used * 100))
        redis_ok = next(c for c in checker.ready().components if c.name == "redis")
        assert redis_ok.level is Level.HEALTHY
        assert 0 < redis_ok.value < 0.5
        runtime.redis.config_set("maxmemory", str(int(used * 1.5)))
        redis_warn = next(c for c in checker.ready().components if c.name == "redis")
        assert redis_warn.level is Level.WARNING
        assert redis_warn.threshold == {"warning": 0.5, "critical": 0.9}
    finally:
        runtime.redis.config_set("maxmemory", original)
