"""Helpers shared by the indexing tests (this module holds no tests).

The tests drive the real app over HTTP (``Api``) and run a real in-process Celery worker on the
same runtime; they wait on task results and document statuses, never on the clock.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import select

from relay.config import Settings
from relay.models import DocumentSegment, OutboxMessage, SegmentKeyword
from tests.integration.test_api_support import Api, TenantCredentials, admin_api
from tests.waiting import wait_until

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "indexing"
FINAL = ("completed", "error", "paused")
LIFECYCLE = [
    (None, "waiting"),
    ("waiting", "parsing"),
    ("parsing", "cleaning"),
    ("cleaning", "splitting"),
    ("splitting", "indexing"),
    ("indexing", "completed"),
]


@contextmanager
def indexing_api(settings: Settings, **indexing: Any) -> Iterator[Api]:
    """The app with an admin token; ``indexing`` overrides fields of ``IndexingSettings``."""
    if indexing:
        changed = settings.indexing.model_copy(update=indexing)
        settings = settings.model_copy(update={"indexing": changed})
    with admin_api(settings) as api:
        yield api


def fixture_file(name: str) -> tuple[io.BytesIO, str]:
    return io.BytesIO((FIXTURES / name).read_bytes()), name


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text()


def new_dataset(api: Api, tenant: TenantCredentials) -> str:
    return str(api.ok("POST", "/v1/datasets", tenant, 201, json={"name": "kb"})["id"])


def docs_path(dataset: str, suffix: str = "") -> str:
    return f"/v1/datasets/{dataset}/documents{suffix}"


def upload_files(api: Api, tenant: TenantCredentials, dataset: str, *names: str) -> Any:
    """Multipart upload of fixture files; returns the response."""
    files = [fixture_file(name) for name in names]
    return api.call(
        "POST", docs_path(dataset), tenant, data={"file": files}, content_type="multipart/form-data"
    )


def upload_text(api: Api, tenant: TenantCredentials, dataset: str, name: str, text: str) -> str:
    """JSON upload of one document; returns its id."""
    body = {"name": name, "content": text}
    created = api.ok("POST", docs_path(dataset), tenant, 201, json=body)
    return str(created["documents"][0]["id"])


def get_document(api: Api, tenant: TenantCredentials, dataset: str, doc: str) -> Any:
    return api.ok("GET", docs_path(dataset, f"/{doc}"), tenant)


def wait_final(
    api: Api, tenant: TenantCredentials, dataset: str, doc: str, statuses: tuple[str, ...] = FINAL
) -> Any:
    """The document once its status is one of ``statuses``."""

    def reached() -> Any:
        view = get_document(api, tenant, dataset, doc)
        return view if view["indexing_status"] in statuses else None

    return wait_until(reached, timeout=30, what=f"document {doc} to reach {statuses}")


def status_log(api: Api, tenant: TenantCredentials, dataset: str, doc: str) -> list[Any]:
    return list(api.ok("GET", docs_path(dataset, f"/{doc}/status-log"), tenant)["data"])


def transitions(api: Api, tenant: TenantCredentials, dataset: str, doc: str) -> list[Any]:
    """The document's (from, to) status changes, in the order they happened."""
    return [(e["from_status"], e["status"]) for e in status_log(api, tenant, dataset, doc)]


def segments(api: Api, doc: str) -> list[DocumentSegment]:
    with api.runtime.db.session() as session:
        query = (
            select(DocumentSegment)
            .where(DocumentSegment.document_id == doc)
            .order_by(DocumentSegment.position)
        )
        return list(session.scalars(query))


def keyword_rows(api: Api, doc: str) -> list[SegmentKeyword]:
    with api.runtime.db.session() as session:
        query = select(SegmentKeyword).where(SegmentKeyword.document_id == doc)
        return list(session.scalars(query))


def outbox_ids(api: Api, task_name: str) -> list[str]:
    """Ids (= Celery task ids) of the outbox rows of ``task_name``, oldest first."""
    with api.runtime.db.session() as session:
        query = (
            select(OutboxMessage.id)
            .where(OutboxMessage.task_name == task_name)
            .order_by(OutboxMessage.created_at)
        )
        return list(session.scalars(query))


def task_result(api: Api, task_id: str) -> Any:
    """The result of a task the outbox published (run by the test's worker)."""
    return api.runtime.celery.AsyncResult(task_id).get(timeout=30)


def last_result(api: Api, task_name: str) -> Any:
    """The result of the latest ``task_name`` enqueued through the outbox."""
    return task_result(api, outbox_ids(api, task_name)[-1])
