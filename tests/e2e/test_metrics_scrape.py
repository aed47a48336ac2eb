"""``/metrics`` of a multi-worker gunicorn API: every scrape, whichever worker answers it, returns
totals over all workers; every metric the Grafana dashboard uses exists in a real scrape."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from relay.config import Settings
from relay.runtime import Runtime
from tests.e2e.api_server import ADMIN, ApiProcess, api_server

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-relay.json"
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
}


def _scrape(api: ApiProcess) -> tuple[str, list[Any]]:
    response = httpx.get(api.url + "/metrics", timeout=10)
    assert response.status_code == 200
    return response.text, list(text_string_to_metric_families(response.text))


def _value(families: list[Any], sample_name: str, **labels: str) -> float:
    found = [
        s.value
        for family in families
        for s in family.samples
        if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, (sample_name, labels, found)
    return float(found[0])


def _live_count(families: list[Any]) -> float:
    return _value(
        families, "relay_http_requests_total", method="GET", endpoint="/health/live", status="200"
    )


def _names(families: list[Any]) -> set[str]:
    """Every name a query can use: sample names and the names a family's type implies."""
    names: set[str] = set()
    for family in families:
        names.add(family.name)
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


def test_counters_add_up_across_workers_and_the_dashboard_matches(
    runtime: Runtime, settings: Settings
) -> None:
    with api_server(settings, workers=2) as api:
        # One tenant created through the API: its events run receivers (event metrics).
        created = httpx.post(
            api.url + "/v1/tenants",
            json={"name": "scraped", "plan": "sandbox"},
            headers={"Authorization": f"Bearer {ADMIN}"},
            timeout=30,
        )
        assert created.status_code == 201, created.text
        # What the start-up probes left (a probe that timed out under load may still count).
        _, before = _scrape(api)
        probes = _live_count(before)
        # New connections until at least two workers have answered (each says its pid).
        pids: list[int] = []
        with httpx.Client(timeout=10, limits=httpx.Limits(max_keepalive_connections=0)) as c:
            while len(set(pids)) < 2 or len(pids) < 30:
                pids.append(c.get(api.url + "/health/live").json()["pid"])
                assert len(pids) < 2000, "one worker answered every request"
        scrapes = [_scrape(api) for _ in range(4)]

    served = len(pids)
    for index, (_, families) in enumerate(scrapes, start=1):
        # Every worker's requests, whichever worker served the scrape.
        assert _live_count(families) == probes + served
        assert (
            _value(families, "relay_http_request_seconds_count", endpoint="/health/live")
            == probes + served
        )
        # The scrapes before this one (the first one included).
        assert (
            _value(families, "relay_http_requests_total", endpoint="/metrics", status="200")
            == index
        )
        assert _value(families, "relay_sse_streams_open", kind="workflow") == 0
        assert _value(families, "relay_queue_length", queue="monitor") >= 0
        assert _value(families, "relay_queue_consumers", queue="monitor") == 0
        assert _value(families, "relay_outbox_pending") >= 0
    text, families = scrapes[-1]
    assert len(set(pids)) >= 2
    # Tenant labels are never raw ids.
    tenant_id = created.json()["id"]
    assert tenant_id not in text
    # The dashboard: valid JSON, and every metric in every expression is in the scrape.
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    assert len(expressions) >= 10
    available = _names(families)
    used = {name for expr in expressions for name in re.findall(r"\b(relay_[a-z0-9_]+)", expr)}
    missing = sorted(used - available)
    assert not missing, missing
