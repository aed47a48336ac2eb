"""The dataset tasks on a real worker: indexing statuses and segments, clean-up, idempotency."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.sql.dml import Update

from relay.models import (
    AppDatasetJoin,
    Dataset,
    Document,
    DocumentSegment,
    IndexingStatus,
    ProcessedKey,
    Tenant,
)
from relay.runtime import Runtime

INDEX = "relay.dataset.index_documents"
CLEAN_DATASET = "relay.dataset.clean_dataset"
CLEAN_DOCUMENT = "relay.dataset.clean_document"


@pytest.fixture
def tenant(runtime: Runtime) -> str:
    return new_tenant(runtime)


@pytest.fixture
def dataset(runtime: Runtime, tenant: str) -> str:
    return new_dataset(runtime, tenant)


def new_tenant(runtime: Runtime) -> str:
    with runtime.db.transaction() as session:
        row = Tenant(name="acme")
        session.add(row)
        session.flush()
        return row.id


def new_dataset(runtime: Runtime, tenant: str) -> str:
    with runtime.db.transaction() as session:
        row = Dataset(tenant_id=tenant, name="kb")
        session.add(row)
        session.flush()
        return row.id


def add_document(runtime: Runtime, tenant: str, dataset: str, name: str, content: str) -> str:
    with runtime.db.transaction() as session:
        row = Document(tenant_id=tenant, dataset_id=dataset, name=name, content=content)
        session.add(row)
        session.flush()
        return row.id


def send(runtime: Runtime, task: str, args: list[Any], key: str, tenant: str) -> Any:
    """Deliver a message as the outbox does (idempotency key and tenant in the headers)."""
    result = runtime.celery.send_task(
        task, args=args, headers={"idempotency_key": key, "tenant_id": tenant}
    )
    return result.get(timeout=30)


def document(runtime: Runtime, doc_id: str) -> Document:
    with runtime.db.session() as session:
        row = session.get(Document, doc_id)
        assert row is not None
        return row


def segments(runtime: Runtime, doc_id: str) -> list[str]:
    with runtime.db.session() as session:
        query = (
            select(DocumentSegment.content)
            .where(DocumentSegment.document_id == doc_id)
            .order_by(DocumentSegment.position)
        )
        return list(session.scalars(query))


@pytest.fixture
def status_writes(runtime: Runtime) -> Iterator[list[str]]:
    """Every ``indexing_status`` value written to ``documents``, in order (any thread)."""
    written: list[str] = []
    lock = threading.Lock()

    def after_execute(conn: Any, clause: Any, multiparams: Any, params: Any, *_: Any) -> None:
        if not isinstance(clause, Update) or clause.table.name != "documents":
            return
        values = dict(clause.compile().params)
        for batch in multiparams or [params or {}]:
            values.update(batch if isinstance(batch, dict) else {})
        if values.get("indexing_status"):
            with lock:
                written.append(str(values["indexing_status"]))

    event.listen(runtime.db.engine, "after_execute", after_execute)
    yield written
    event.remove(runtime.db.engine, "after_execute", after_execute)


def test_a_document_goes_through_every_status(
    runtime: Runtime, tenant: str, dataset: str, worker: Any, status_writes: list[str]
) -> None:
    paragraphs = [f"Paragraph {i}. " + "word " * 60 for i in range(12)]
    doc = add_document(runtime, tenant, dataset, "notes.txt", "\n\n".join(paragraphs))

    outcome = send(runtime, INDEX, [tenant, dataset, [doc]], "k-statuses", tenant)

    assert outcome == {doc: "completed"}
    assert status_writes == ["parsing", "cleaning", "splitting", "indexing", "completed"]
    row = document(runtime, doc)
    assert row.indexing_status == IndexingStatus.COMPLETED
    assert row.error is None
    assert row.processing_started_at is not None
    assert row.completed_at is not None
    stored = segments(runtime, doc)
    assert len(stored) > 1
    assert all(len(s) <= 500 for s in stored)
    assert row.word_count == sum(len(s.split()) for s in stored)
    assert all(p.split(".")[0] in "".join(stored) for p in paragraphs)


def test_markdown_and_html_are_indexed_as_text(
    runtime: Runtime, tenant: str, dataset: str, worker: Any
) -> None:
    md = add_document(runtime, tenant, dataset, "a.md", "# Title\n\nSome **bold** [link](x).")
    page = "<h1>Head</h1><p>Body &amp; more</p><script>x()</script>"
    html = add_document(runtime, tenant, dataset, "b.html", page)
    outcome = send(runtime, INDEX, [tenant, dataset, [md, html]], "k-formats", tenant)
    assert outcome == {md: "completed", html: "completed"}
    assert segments(runtime, md) == ["Title\n\nSome bold link."]
    assert segments(runtime, html) == ["Head\n\nBody & more"]


def test_a_document_without_text_ends_in_error(
    runtime: Runtime, tenant: str, dataset: str, worker: Any
) -> None:
    empty = add_document(runtime, tenant, dataset, "c.html", "<script>only()</script>")
    fine = add_document(runtime, tenant, dataset, "d.txt", "fine")
    outcome = send(runtime, INDEX, [tenant, dataset, [empty, fine]], "k-error", tenant)
    assert outcome == {empty: "error", fine: "completed"}
    row = document(runtime, empty)
    assert (row.indexing_status, row.error) == (IndexingStatus.ERROR, "the document has no text")
    assert segments(runtime, empty) == []
    assert document(runtime, fine).indexing_status == IndexingStatus.COMPLETED


def test_a_duplicate_delivery_is_a_no_op(
    runtime: Runtime, tenant: str, dataset: str, worker: Any, status_writes: list[str]
) -> None:
    doc = add_document(runtime, tenant, dataset, "e.txt", "Some text.\n\nMore text.")
    assert send(runtime, INDEX, [tenant, dataset, [doc]], "k-dup", tenant) == {doc: "completed"}
    before = segments(runtime, doc)
    writes = len(status_writes)

    assert send(runtime, INDEX, [tenant, dataset, [doc]], "k-dup", tenant) == {doc: "skipped"}
    assert segments(runtime, doc) == before
    assert len(status_writes) == writes, "not even a progress status was written"
    assert document(runtime, doc).indexing_status == IndexingStatus.COMPLETED
    with runtime.db.session() as session:
        keys = list(session.scalars(select(ProcessedKey.idempotency_key)))
    assert keys == [f"k-dup:{doc}"]


def test_a_redelivery_finishes_only_what_is_left(
    runtime: Runtime, tenant: str, dataset: str, worker: Any
) -> None:
    """A worker died after the first document: the redelivered message does the second."""
    first = add_document(runtime, tenant, dataset, "f.txt", "first")
    second = add_document(runtime, tenant, dataset, "g.txt", "second")
    assert send(runtime, INDEX, [tenant, dataset, [first]], "k-partial", tenant) == {
        first: "completed"
    }
    outcome = send(runtime, INDEX, [tenant, dataset, [first, second]], "k-partial", tenant)
    assert outcome == {first: "skipped", second: "completed"}
    assert segments(runtime, first) == ["first"]
    assert segments(runtime, second) == ["second"]


def test_a_new_index_request_replaces_the_segments(
    runtime: Runtime, tenant: str, dataset: str, worker: Any
) -> None:
    doc = add_document(runtime, tenant, dataset, "h.txt", "old text")
    send(runtime, INDEX, [tenant, dataset, [doc]], "k-one", tenant)
    with runtime.db.transaction() as session:
        row = session.get(Document, doc)
        assert row is not None
        row.content, row.indexing_status = "new text", IndexingStatus.WAITING
    assert send(runtime, INDEX, [tenant, dataset, [doc]], "k-two", tenant) == {doc: "completed"}
    assert segments(runtime, doc) == ["new text"]


def test_other_tenants_and_deleted_documents_are_missing(
    runtime: Runtime, tenant: str, dataset: str, worker: Any
) -> None:
    other = new_tenant(runtime)
    theirs = add_document(runtime, other, new_dataset(runtime, other), "i.txt", "private")
    outcome = send(runtime, INDEX, [tenant, dataset, [theirs, "no-such-doc"]], "k-miss", tenant)
    assert outcome == {theirs: "missing", "no-such-doc": "missing"}
    row = document(runtime, theirs)
    assert row.indexing_status == IndexingStatus.WAITING
    assert segments(runtime, theirs) == []


def test_arguments_naming_another_tenant_are_refused(
    runtime: Runtime, tenant: str, dataset: str, worker: Any
) -> None:
    other = new_tenant(runtime)
    doc = add_document(runtime, tenant, dataset, "j.txt", "text")
    result = runtime.celery.send_task(
        INDEX, args=[tenant, dataset, [doc]], headers={"idempotency_key": "k", "tenant_id": other}
    )
    with pytest.raises(Exception, match="arguments name tenant"):
        result.get(timeout=30)
    assert document(runtime, doc).indexing_status == IndexingStatus.WAITING


def seed(runtime: Runtime, tenant: str, dataset: str, app_id: str = "app-1") -> str:
    doc = add_document(runtime, tenant, dataset, "k.txt", "text")
    with runtime.db.transaction() as session:
        session.add(
            DocumentSegment(
                tenant_id=tenant, dataset_id=dataset, document_id=doc, position=1, content="text"
            )
        )
        session.add(AppDatasetJoin(tenant_id=tenant, app_id=app_id, dataset_id=dataset))
    return doc


def counts(runtime: Runtime, dataset: str) -> tuple[int, int, int]:
    with runtime.db.session() as session:
        return tuple(  # type: ignore[return-value]
            int(session.scalar(select(func.count()).where(model.dataset_id == dataset)) or 0)
            for model in (Document, DocumentSegment, AppDatasetJoin)
        )


def delete_dataset_row(runtime: Runtime, dataset: str) -> None:
    with runtime.db.transaction() as session:
        session.execute(Dataset.__table__.delete().where(Dataset.id == dataset))


def test_clean_dataset_removes_what_the_deletion_left(
    runtime: Runtime, tenant: str, dataset: str, worker: Any
) -> None:
    seed(runtime, tenant, dataset)
    other = new_tenant(runtime)
    # Another tenant's rows that happen to carry the same dataset id stay untouched.
    with runtime.db.transaction() as session:
        session.add(AppDatasetJoin(tenant_id=other, app_id="app-2", dataset_id=dataset))

    refused = send(runtime, CLEAN_DATASET, [tenant, dataset], "k-live", tenant)
    assert refused == {"skipped": "dataset exists"}
    assert counts(runtime, dataset) == (1, 1, 2)

    # With SQLite's (and PostgreSQL's) cascades the documents go with the dataset row; the
    # joins have no foreign key and are the task's to remove.
    delete_dataset_row(runtime, dataset)
    result = send(runtime, CLEAN_DATASET, [tenant, dataset], "k-clean", tenant)
    assert result["joins"] == 1
    assert counts(runtime, dataset) == (0, 0, 1)
    assert send(runtime, CLEAN_DATASET, [tenant, dataset], "k-clean", tenant) == {
        "skipped": "duplicate"
    }


def test_clean_document_removes_its_segments(
    runtime: Runtime, tenant: str, dataset: str, worker: Any
) -> None:
    doc = seed(runtime, tenant, dataset)
    refused = send(runtime, CLEAN_DOCUMENT, [tenant, dataset, doc], "k-doc-live", tenant)
    assert refused == {"skipped": "document exists"}
    assert segments(runtime, doc) == ["text"]

    with runtime.db.transaction() as session:
        session.execute(Document.__table__.delete().where(Document.id == doc))
    result = send(runtime, CLEAN_DOCUMENT, [tenant, dataset, doc], "k-doc", tenant)
    assert result["segments"] >= 0
    assert segments(runtime, doc) == []
