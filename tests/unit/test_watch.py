"""The pure evaluators behind the health watch: health components, noisy and slow tenants,
event receivers' error rates; and the Slack payload."""

from __future__ import annotations

from relay.monitoring.alerts import Alert, Severity, SlackChannel
from relay.monitoring.levels import Component, Level
from relay.monitoring.watch import (
    event_error_alerts,
    health_alerts,
    noisy_neighbours,
    slow_tenants,
    wait_p99,
)
from relay.scheduling.metrics import TenantLabels
from relay.scheduling.tenant_queue import TenantState, WaitHistogram


def _state(tenant: str, running: int, waiting: int, weight: int = 1) -> TenantState:
    return TenantState("workflow_team", tenant, weight, waiting, running, 0.0)


def test_only_degraded_components_alert_at_their_level() -> None:
    alerts = health_alerts(
        [
            Component("redis", Level.HEALTHY, value=0.1),
            Component("outbox", Level.WARNING, value=90.0, threshold={"warning": 60.0}),
            Component("workers", Level.CRITICAL, value={"mail": 0}, message="no consumer: mail"),
        ]
    )
    assert [(a.key, a.severity) for a in alerts] == [
        ("health.outbox", Severity.WARNING),
        ("health.workers", Severity.CRITICAL),
    ]
    assert "90.0" in alerts[0].message
    assert alerts[1].message == "workers is critical: no consumer: mail"
    assert alerts[0].details == {"value": 90.0, "threshold": {"warning": 60.0}}


def test_a_tenant_far_above_its_fair_share_while_others_wait_is_noisy() -> None:
    label = TenantLabels({"big": "acme"})
    states = [_state("big", running=6, waiting=10), _state("small", running=1, waiting=3)]
    alerts = noisy_neighbours(states, share=1.5, label=label)
    assert [a.key for a in alerts] == ["tenant.noisy:workflow_team:acme"]
    assert alerts[0].details["running"] == 6
    assert alerts[0].details["fair_share"] == 3.5
    assert alerts[0].details["waiting_others"] == 3
    # Nobody else waits: using idle slots is fine.
    assert noisy_neighbours([_state("big", 6, 10), _state("small", 1, 0)], 1.5) == []
    # Weights count: a tenant of weight 4 may hold four times as many slots.
    assert noisy_neighbours([_state("big", 6, 2, weight=4), _state("small", 1, 3)], 1.5) == []
    # Even shares are not noisy.
    assert noisy_neighbours([_state("a", 3, 5), _state("b", 3, 5)], 1.5) == []


def test_p99_is_the_bucket_bound_holding_it() -> None:
    bounds = (0.1, 1.0, 10.0)
    assert wait_p99(bounds, [0, 0, 0, 0]) is None
    assert wait_p99(bounds, [99, 1, 0, 0]) == 0.1
    assert wait_p99(bounds, [90, 5, 5, 0]) == 10.0
    assert wait_p99(bounds, [50, 0, 0, 50]) == float("inf")


def test_slow_tenants_use_the_waits_since_the_last_check() -> None:
    bounds = (1.0, 10.0, 60.0)
    current = {
        "slow": WaitHistogram((100, 0, 0, 20), 0.0),
        "fine": WaitHistogram((100, 20, 0, 0), 0.0),
    }
    label = TenantLabels()
    found = slow_tenants("q", current, {}, bounds, 30.0, label)
    assert [a.key for a in found] == [f"tenant.slow:q:{label('slow')}"]
    assert not found[0].key.endswith(":slow")  # the label is a hash, not the id
    assert found[0].details["observations"] == 120
    # The same counts at the previous check: nothing new was slow.
    previous = {"slow": [100, 0, 0, 20], "fine": [100, 20, 0, 0]}
    assert slow_tenants("q", current, previous, bounds, 30.0) == []


def test_signals_failing_above_the_rate_alert_once_they_have_enough_calls() -> None:
    rates = {
        "run_failed": {"total": 20, "failures": 5, "error_rate": 0.25, "avg_ms": 1.0},
        "tenant_created": {"total": 3, "failures": 3, "error_rate": 1.0, "avg_ms": 1.0},
        "document_added": {"total": 100, "failures": 1, "error_rate": 0.01, "avg_ms": 1.0},
    }
    alerts = event_error_alerts(rates, threshold=0.1, min_calls=10)
    assert [(a.key, a.severity) for a in alerts] == [("events.errors:run_failed", Severity.ERROR)]
    assert "5 of 20" in alerts[0].message


def test_tenant_labels_are_configured_names_or_short_hashes() -> None:
    label = TenantLabels({"t1": "acme"})
    assert label("t1") == "acme"
    hashed = label("0b6b5e0c-7d4e-4c55-9c7f-2f5f7d0a1b2c")
    assert hashed.startswith("t-")
    assert len(hashed) == 12
    assert hashed == label("0b6b5e0c-7d4e-4c55-9c7f-2f5f7d0a1b2c")
    assert hashed != label("another")


def test_slack_payload_has_text_and_blocks() -> None:
    channel = SlackChannel("http://127.0.0.1:1/hook")
    alert = Alert("health.redis", Severity.CRITICAL, "redis is critical", {"value": 0.97})
    body = channel.payload(alert)
    assert body["text"].startswith(":rotating_light: relay critical: health.redis")
    assert body["blocks"][0]["text"]["text"] == "*:rotating_light: relay critical: health.redis*"
    assert body["blocks"][2]["fields"] == [{"type": "mrkdwn", "text": "*value*\n0.97"}]
    resolved = channel.payload(
        Alert("health.redis", Severity.CRITICAL, "[resolved] redis", resolved=True)
    )
    assert resolved["text"].startswith(":white_check_mark: relay resolved: health.redis")
    assert all(block["type"] != "section" or "fields" not in block for block in resolved["blocks"])
