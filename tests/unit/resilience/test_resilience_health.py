"""Health components of the spool, each circuit breaker and resource pressure."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from relay.monitoring.levels import Level
from relay.monitoring.resilience_health import (
    basic_components,
    circuit_components,
    resilience_components,
    spool_component,
)
from relay.resilience.breaker import Breakers
from relay.resilience.spool import Spool, SpoolEntry, SpoolFull, encode_record


def refused() -> None:
    raise redis.ConnectionError("Connection refused")


def trip(breakers: Breakers, name: str) -> None:
    for _ in range(breakers.fail_max):
        with pytest.raises(redis.ConnectionError):
            breakers.call(name, refused)


def test_each_breaker_is_a_component_with_its_state_since_and_failures() -> None:
    breakers = Breakers(fail_max=2, reset_timeout=0.2)
    breakers.call("redis", lambda: "ok")
    with pytest.raises(redis.ConnectionError):
        breakers.call("redis", refused)
    before = time.time()
    trip(breakers, "broker")
    trip(breakers, "http:llm.example")

    found = {c.name: c for c in circuit_components(breakers)}
    assert found["circuit:redis"].level is Level.HEALTHY
    assert found["circuit:redis"].details["failures"] == 1
    broker = found["circuit:broker"]
    assert broker.level is Level.CRITICAL
    assert broker.value == "open"
    assert broker.details["failures"] == 2
    assert broker.details["since"] >= before
    assert broker.threshold == {"critical": "open", "fail_max": 2}
    assert found["circuit:http:llm.example"].level is Level.WARNING, "a task's dependency"

    basic = {
        c.name: c for c in basic_components(Spool(Path("/nonexistent"), interval=600), breakers)
    }
    assert basic["circuit:broker"].ok is False
    assert basic["circuit:http:llm.example"].ok is True
    assert basic["spool"].ok is True

    time.sleep(0.25)
    breakers.call("broker", lambda: "ok")  # the half-open trial succeeds
    assert {c.name: c.level for c in circuit_components(breakers)}["circuit:broker"] is (
        Level.HEALTHY
    )


def test_the_spool_warns_while_entries_wait_and_is_critical_when_full(tmp_path: Path) -> None:
    item = SpoolEntry(kind="k", key="1", body={"x": "y" * 50})
    spool = Spool(tmp_path, interval=600, max_bytes=len(encode_record(item)) * 2 + 4)
    assert spool_component(spool).level is Level.HEALTHY
    spool.append(item)
    waiting = spool_component(spool)
    assert waiting.level is Level.WARNING
    assert waiting.details["entries"] == 1
    assert waiting.threshold == {"warning": 0.5, "critical": 0.9}
    spool.append(item)
    with pytest.raises(SpoolFull):
        spool.append(item)
    full = spool_component(spool)
    assert full.level is Level.CRITICAL
    assert full.details["full"] is True
    assert "full" in (full.message or "")
    assert [c.name for c in resilience_components(spool, Breakers())] == ["spool"]
