"""Documents over the tenant API: JSON and multipart upload, size limit, status, delete."""

from __future__ import annotations

import io
from typing import Any

import pytest

from relay.events.payloads import DocumentDeleted, DocumentIndexCreated
from relay.models import Document, DocumentSegment
from relay.services.document_service import MAX_DOCUMENT_BYTES
from tests.integration.test_api_support import Api, TenantCredentials, captured_events


@pytest.fixture
def dataset(api: Api, tenant: TenantCredentials) -> str:
    created = api.ok("POST", "/v1/datasets", tenant, 201, json={"name": "kb"})
    return str(created["id"])


def _path(dataset: str, suffix: str = "") -> str:
    return f"/v1/datasets/{dataset}/documents{suffix}"


def test_json_upload_creates_a_waiting_document_and_one_event(
    api: Api, tenant: TenantCredentials, dataset: str
) -> None:
    with captured_events(api.runtime) as events:
        body = {"name": "Guide", "content": "one two three", "format": "markdown"}
        created = api.ok("POST", _path(dataset), tenant, 201, json=body)
    (doc,) = created["documents"]
    assert doc["name"] == "Guide"
    assert doc["dataset_id"] == dataset
    assert doc["word_count"] == 3
    assert doc["segment_count"] == 0
    assert doc["error"] is None
    (row,) = api.rows(Document, id=doc["id"])
    assert row.indexing_status == "waiting"
    assert row.tenant_id == tenant.id
    assert row.content == "one two three"
    indexing = [payload for name, payload in events if name == "document_index_created"]
    assert indexing == [DocumentIndexCreated(tenant.id, dataset, (doc["id"],))]


def test_html_is_stored_as_uploaded_for_the_indexing_task(
    api: Api, tenant: TenantCredentials, dataset: str
) -> None:
    # The indexing task's parsing phase extracts the text (tests/integration/test_indexing*.py).
    html = "<html><head><style>p{}</style></head><body><h1>Title</h1><p>Hello <b>you</b></p>"
    html += "<script>alert(1)</script></body></html>"
    created = api.ok(
        "POST", _path(dataset), tenant, 201, json={"name": "p", "content": html, "format": "html"}
    )
    assert created["documents"][0]["format"] == "html"
    (row,) = api.rows(Document, id=created["documents"][0]["id"])
    assert (row.content, row.content_format) == (html, "html")


def test_multipart_upload_of_several_files_is_one_event(api: Api) -> None:
    # A sandbox tenant may upload one document at a time (tests/integration/test_indexing*.py).
    tenant = api.create_tenant(plan="professional")
    dataset = api.ok("POST", "/v1/datasets", tenant, 201, json={"name": "kb"})["id"]
    files = [
        (io.BytesIO(b"# Heading\nbody text"), "notes.md"),
        (io.BytesIO("<p>caf\u00e9</p>".encode()), "page.html"),
    ]
    with captured_events(api.runtime) as events:
        response = api.call(
            "POST",
            _path(dataset),
            tenant,
            data={"file": files},
            content_type="multipart/form-data",
        )
    assert response.status_code == 201, response.json
    docs = response.json["documents"]
    assert [d["name"] for d in docs] == ["notes.md", "page.html"]
    rows = {row.name: row for row in api.rows(Document, dataset_id=dataset)}
    assert (rows["page.html"].content, rows["page.html"].content_format) == (
        "<p>caf\u00e9</p>",
        "html",
    )
    assert (rows["notes.md"].content, rows["notes.md"].content_format) == (
        "# Heading\nbody text",
        "markdown",
    )
    indexing = [payload for name, payload in events if name == "document_index_created"]
    assert indexing == [DocumentIndexCreated(tenant.id, dataset, tuple(d["id"] for d in docs))]


def test_multipart_name_and_format_fields(
    api: Api, tenant: TenantCredentials, dataset: str
) -> None:
    response = api.call(
        "POST",
        _path(dataset),
        tenant,
        data={"file": (io.BytesIO(b"<b>x</b>"), "upload.bin"), "name": "Named", "format": "html"},
        content_type="multipart/form-data",
    )
    assert response.status_code == 201, response.json
    (row,) = api.rows(Document, dataset_id=dataset)
    assert (row.name, row.content, row.content_format) == ("Named", "<b>x</b>", "html")


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ({}, "bad_request"),  # no file part
        ({"file": (io.BytesIO(b"\xff\xfe\x00bad"), "x.txt")}, "bad_request"),
        ({"file": (io.BytesIO(b"ok"), "x.txt"), "format": "pdf"}, "invalid_input"),
        ({"file": (io.BytesIO(b"ok"), "x.txt"), "owner": "me"}, "invalid_input"),
        ({"file": (io.BytesIO(b"   "), "x.txt")}, "bad_request"),
    ],
)
def test_bad_multipart_upload_is_a_400(
    api: Api, tenant: TenantCredentials, dataset: str, data: dict[str, Any], code: str
) -> None:
    response = api.call(
        "POST", _path(dataset), tenant, data=data, content_type="multipart/form-data"
    )
    assert response.status_code == 400
    assert response.json["code"] == code
    assert api.rows(Document) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"content": "x"}, "name"),
        ({"name": "a"}, "content"),
        ({"name": "a", "content": "x", "format": "pdf"}, "format"),
        ({"name": "a", "content": 5}, "content"),
        ({"name": "a", "content": "x", "indexing_status": "completed"}, "indexing_status"),
    ],
)
def test_bad_json_upload_is_a_400(
    api: Api, tenant: TenantCredentials, dataset: str, body: dict[str, Any], field: str
) -> None:
    response = api.call("POST", _path(dataset), tenant, json=body)
    assert response.status_code == 400
    assert response.json["code"] == "invalid_input"
    assert [d["field"] for d in response.json["details"]] == [field]
    assert api.rows(Document) == []


def test_oversized_documents_are_413(api: Api, tenant: TenantCredentials, dataset: str) -> None:
    at_limit = "a" * MAX_DOCUMENT_BYTES
    exact = api.call("POST", _path(dataset), tenant, json={"name": "max", "content": at_limit})
    assert exact.status_code == 201, "the limit itself is fine"

    over = api.call("POST", _path(dataset), tenant, json={"name": "big", "content": at_limit + "é"})
    assert over.status_code == 413
    assert over.json["code"] == "document_too_large"
    assert over.json["details"]["limit"] == MAX_DOCUMENT_BYTES

    upload = api.call(
        "POST",
        _path(dataset),
        tenant,
        data={"file": (io.BytesIO(b"b" * (MAX_DOCUMENT_BYTES + 1)), "big.txt")},
        content_type="multipart/form-data",
    )
    assert upload.status_code == 413
    assert upload.json["code"] == "document_too_large"

    huge = api.call(
        "POST",
        _path(dataset),
        tenant,
        data=b"x" * (12 * MAX_DOCUMENT_BYTES),
        content_type="application/json",
    )
    assert huge.status_code == 413
    assert huge.json["code"] == "document_too_large"
    assert len(api.rows(Document)) == 1


def test_unknown_dataset_is_404(api: Api, tenant: TenantCredentials) -> None:
    response = api.call("POST", _path("missing"), tenant, json={"name": "a", "content": "x"})
    assert response.status_code == 404
    assert response.json["message"] == "dataset not found"
    assert api.call("GET", _path("missing"), tenant).status_code == 404
    assert api.rows(Document) == []


def test_get_shows_status_error_and_segments(
    api: Api, tenant: TenantCredentials, dataset: str
) -> None:
    created = api.ok("POST", _path(dataset), tenant, 201, json={"name": "a", "content": "x y"})
    doc_id = created["documents"][0]["id"]
    with api.runtime.db.transaction() as session:
        # What the indexing task leaves behind.
        row = session.get(Document, doc_id)
        assert row is not None
        row.indexing_status = "error"
        row.error = "parser exploded"
        session.add_all(
            DocumentSegment(
                tenant_id=tenant.id,
                dataset_id=dataset,
                document_id=doc_id,
                position=i,
                content=f"segment {i}",
            )
            for i in range(3)
        )
    fetched = api.ok("GET", _path(dataset, f"/{doc_id}"), tenant)
    assert fetched["indexing_status"] == "error"
    assert fetched["error"] == "parser exploded"
    assert fetched["segment_count"] == 3
    assert fetched["word_count"] == 2
    listed = api.ok("GET", _path(dataset), tenant)
    assert listed["data"][0]["segment_count"] == 3


def test_list_pages(api: Api, tenant: TenantCredentials, dataset: str) -> None:
    for i in range(3):
        api.ok("POST", _path(dataset), tenant, 201, json={"name": f"d{i}", "content": "x"})
    page = api.ok("GET", _path(dataset, "?limit=2"), tenant)
    assert [d["name"] for d in page["data"]] == ["d2", "d1"]
    assert (page["total"], page["has_more"]) == (3, True)
    assert api.call("GET", _path(dataset, "?limit=101"), tenant).status_code == 400


def test_delete_document(api: Api, tenant: TenantCredentials, dataset: str) -> None:
    created = api.ok("POST", _path(dataset), tenant, 201, json={"name": "a", "content": "x"})
    doc_id = created["documents"][0]["id"]
    other = api.ok("POST", "/v1/datasets", tenant, 201, json={"name": "other"})["id"]
    # The document exists, but not in that dataset.
    assert api.call("DELETE", _path(other, f"/{doc_id}"), tenant).status_code == 404
    assert api.call("GET", _path(other, f"/{doc_id}"), tenant).status_code == 404

    with captured_events(api.runtime) as events:
        response = api.call("DELETE", _path(dataset, f"/{doc_id}"), tenant)
    assert response.status_code == 204
    assert events == [("document_was_deleted", DocumentDeleted(tenant.id, dataset, doc_id))]
    assert api.rows(Document) == []
    missing = api.call("GET", _path(dataset, f"/{doc_id}"), tenant)
    assert missing.status_code == 404
    assert missing.json["message"] == "document not found"
