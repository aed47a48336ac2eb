"""API "create document": the outbox (crash-safe) against a direct enqueue inside the request.

Same app, same endpoint, same database and Redis. The baseline swaps the indexing handler for one
that calls ``send_task`` directly in the request, as Dify's ``.delay()`` does (not crash-safe:
the task may be lost between commit and publish, or published for a rolled-back upload).
"""

from __future__ import annotations

import os
import time

from bench.common import Row, bench_runtime, best_of
from relay.events import signals
from relay.events.bus import EventContext
from relay.events.handlers.document_indexing import enqueue_document_indexing, indexing_queue
from relay.events.payloads import DocumentIndexCreated
from relay.services.auth_service import AuthService
from relay.services.dataset_service import DatasetService
from relay.services.tenant_service import TenantService

UPLOADS = int(os.environ.get("BENCH_UPLOADS", "300"))


def run(rounds: int) -> list[Row]:
    with bench_runtime() as (app, runtime):
        tenant = TenantService(runtime).create("bench", "enterprise")
        key = AuthService(runtime).issue_key(tenant.id, "bench").key
        dataset = DatasetService(runtime).create(tenant.id, name="bench")
        client = app.test_client()
        headers = {"Authorization": f"Bearer {key}"}
        url = f"/v1/datasets/{dataset.id}/documents"
        body = {"name": "doc.txt", "content": "relay benchmark document. " * 40, "format": "text"}

        def uploads_per_second() -> float:
            started = time.perf_counter()
            for _ in range(UPLOADS):
                response = client.post(url, json=body, headers=headers)
                assert response.status_code == 201, response.get_data(as_text=True)
            return UPLOADS / (time.perf_counter() - started)

        def direct(payload: DocumentIndexCreated, ctx: EventContext) -> None:
            runtime.celery.send_task(
                "relay.dataset.index_documents",
                args=[payload.tenant_id, payload.dataset_id, list(payload.document_ids)],
                queue=indexing_queue(None),
            )

        signal = signals.document_index_created
        with_outbox = best_of(rounds, uploads_per_second)
        runtime.bus.disconnect(signal, enqueue_document_indexing)
        runtime.bus.connect(signal, direct)
        try:
            baseline = best_of(rounds, uploads_per_second)
        finally:
            runtime.bus.disconnect(signal, direct)
            runtime.bus.connect(signal, enqueue_document_indexing)
    database = "PostgreSQL" if os.environ.get("RELAY_DATABASE_URL") else "SQLite"
    return [
        Row(
            f"API create document ({database}, req/s)",
            with_outbox,
            baseline,
            "/s",
            higher_is_better=True,
            note="baseline: direct send_task in the request (Dify's .delay()); in-process client",
        )
    ]
