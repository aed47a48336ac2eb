"""``/metrics``: behind a bearer token when one is configured; no unbounded label values."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from relay.app_factory import create_app
from relay.config import Settings
from relay.models import Base
from relay.scheduling.tenant_queue import NewItem
from tests.conftest import migrated_external_db_in_use

TOKEN = "metrics-token-0123456789"


@pytest.fixture
def guarded(settings: Settings) -> Iterator[Flask]:
    configured = settings.model_copy(
        update={
            "monitoring": settings.monitoring.model_copy(update={"metrics_token": TOKEN}),
            "scheduling": settings.scheduling.model_copy(update={"metrics_top_tenants": 3}),
        }
    )
    app = create_app(configured)
    if not migrated_external_db_in_use(configured):
        Base.metadata.create_all(app.extensions["relay"].db.engine)
    yield app
    app.extensions["relay"].close()


def test_metrics_need_the_token_when_configured(guarded: Flask) -> None:
    client = guarded.test_client()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        refused = client.get("/metrics", headers=headers)
        assert refused.status_code == 401
        assert refused.json["code"] == "unauthorized"
        assert "relay_" not in refused.get_data(as_text=True)
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    allowed = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert allowed.status_code == 200
    assert "relay_http_requests_total" in allowed.get_data(as_text=True)


def test_metrics_are_open_without_a_token(client: object) -> None:
    assert client.get("/metrics").status_code == 200  # type: ignore[attr-defined]


def test_labels_stay_bounded(guarded: Flask) -> None:
    runtime = guarded.extensions["relay"]
    queue = runtime.dispatcher.queue
    for i in range(20):
        tenant = str(uuid.uuid4())
        for n in range(i % 4 + 2):  # more than the one slot a tenant gets: some wait
            queue.enqueue_or_acquire("q", NewItem(f"{tenant}-{n}", tenant, "t", "{}", 1, 1))
    client = guarded.test_client()
    for n in range(20):
        client.open("/v1/apps", method=f"X{n}METHOD")
        client.get(f"/v1/nowhere/{uuid.uuid4()}")
    text = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).get_data(
        as_text=True
    )
    values: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            for label, value in sample.labels.items():
                values.setdefault(label, set()).add(value)
    named = values.get("tenant", set()) - {"other"}
    assert len(named) <= 3, named
    assert "other" in values["tenant"]
    assert not any(re.search(r"X\d+METHOD", m) for m in values["method"])
    assert not any("nowhere" in e for e in values["endpoint"])
