"""Steering indexing over the API, with a real worker: pause and resume, enable and disable
(adding a document to the keyword index and removing it), retry, and batch delete."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from relay.config import Settings
from relay.models import Document, DocumentStatusLog, SegmentKeyword
from relay.services.document_status import pause_key
from tests.conftest import run_worker
from tests.integration.test_api_support import ADMIN, Api, TenantCredentials
from tests.integration.test_indexing_support import (
    LIFECYCLE,
    docs_path,
    get_document,
    indexing_api,
    keyword_rows,
    last_result,
    new_dataset,
    outbox_ids,
    segments,
    status_log,
    task_result,
    transitions,
    upload_files,
    upload_text,
    wait_final,
)

INDEX = "relay.dataset.index_documents"
RETRY = "relay.dataset.retry_document_indexing"
ADD = "relay.dataset.add_document_to_index"
REMOVE = "relay.dataset.remove_document_from_index"
BATCH_CLEAN = "relay.dataset.batch_clean_documents"
TEXT = "Kafka consumers rebalance.\n\nZookeeper elections settle leadership quickly."


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    with indexing_api(settings) as driver:
        yield driver


@pytest.fixture
def tenant(api: Api) -> TenantCredentials:
    return api.create_tenant(plan="team")


@pytest.fixture
def dataset(api: Api, tenant: TenantCredentials) -> str:
    return new_dataset(api, tenant)


def _put(api: Api, tenant: TenantCredentials, dataset: str, doc: str, action: str) -> Any:
    return api.call("PUT", docs_path(dataset, f"/{doc}/{action}"), tenant)


def _search(api: Api, tenant: TenantCredentials, dataset: str, q: str) -> list[str]:
    found = api.ok("GET", f"/v1/datasets/{dataset}/segments?q={q}", tenant)
    return [hit["document_id"] for hit in found["data"]]


def test_a_waiting_document_pauses_and_resumes(
    api: Api, tenant: TenantCredentials, dataset: str
) -> None:
    doc = upload_text(api, tenant, dataset, "a.txt", TEXT)
    paused = _put(api, tenant, dataset, doc, "pause")
    assert (paused.status_code, paused.json["indexing_status"]) == (200, "paused")
    assert _put(api, tenant, dataset, doc, "pause").status_code == 200, "idempotent"
    with run_worker(api.runtime):
        # The upload's message arrives and leaves the paused document alone.
        assert last_result(api, INDEX) == {doc: "paused"}
        assert get_document(api, tenant, dataset, doc)["indexing_status"] == "paused"
        assert segments(api, doc) == []

        resumed = _put(api, tenant, dataset, doc, "resume")
        assert (resumed.status_code, resumed.json["indexing_status"]) == (200, "waiting")
        assert last_result(api, INDEX) == {doc: "completed"}
    assert transitions(api, tenant, dataset, doc) == [
        (None, "waiting"),
        ("waiting", "paused"),
        ("paused", "waiting"),
        *LIFECYCLE[1:],
    ]
    assert api.runtime.redis.exists(pause_key(doc)) == 0
    conflict = _put(api, tenant, dataset, doc, "resume")
    assert (conflict.status_code, conflict.json["code"]) == (409, "conflict")
    assert _put(api, tenant, dataset, doc, "pause").status_code == 409, "completed"


def test_the_task_parks_a_document_whose_pause_flag_it_finds(
    api: Api, tenant: TenantCredentials, dataset: str
) -> None:
    """A pause requested while the task is under way: it stops at the next phase boundary."""
    doc = upload_text(api, tenant, dataset, "b.txt", TEXT)
    # What the pause endpoint does for a document already in progress: only the flag.
    api.runtime.redis.set(pause_key(doc), "1")
    with run_worker(api.runtime):
        assert last_result(api, INDEX) == {doc: "paused"}
        log = status_log(api, tenant, dataset, doc)
        assert [(e["from_status"], e["status"], e["reason"]) for e in log][-1] == (
            "waiting",
            "paused",
            "paused",
        )
        assert _put(api, tenant, dataset, doc, "resume").status_code == 200
        assert last_result(api, INDEX) == {doc: "completed"}
    assert segments(api, doc)


def test_disable_removes_a_document_from_the_index_and_enable_restores_it(
    api: Api, tenant: TenantCredentials, dataset: str
) -> None:
    doc = upload_text(api, tenant, dataset, "c.txt", TEXT)
    other = upload_text(api, tenant, dataset, "d.txt", "Kafka partitions.")
    with run_worker(api.runtime):
        wait_final(api, tenant, dataset, doc)
        wait_final(api, tenant, dataset, other)
        before = {(row.segment_id, row.keyword) for row in keyword_rows(api, doc)}
        assert before
        assert set(_search(api, tenant, dataset, "kafka")) == {doc, other}

        disabled = _put(api, tenant, dataset, doc, "disable")
        assert (disabled.status_code, disabled.json["enabled"]) == (200, False)
        assert _put(api, tenant, dataset, doc, "disable").status_code == 200
        assert len(outbox_ids(api, REMOVE)) == 1, "a repeated disable enqueues nothing"
        assert last_result(api, REMOVE) == {"keywords": len(before)}
        assert keyword_rows(api, doc) == []
        assert all(not segment.enabled for segment in segments(api, doc))
        assert _search(api, tenant, dataset, "kafka+zookeeper") == [other]
        assert len(keyword_rows(api, other)) > 0, "the other document stays indexed"

        enabled = _put(api, tenant, dataset, doc, "enable")
        assert (enabled.status_code, enabled.json["enabled"]) == (200, True)
        assert last_result(api, ADD) == {"keywords": len(before)}
    assert {(row.segment_id, row.keyword) for row in keyword_rows(api, doc)} == before
    assert all(segment.enabled for segment in segments(api, doc))
    assert _search(api, tenant, dataset, "zookeeper+kafka")[0] == doc


def test_a_document_disabled_while_waiting_is_indexed_out_of_the_index(
    api: Api, tenant: TenantCredentials, dataset: str
) -> None:
    doc = upload_text(api, tenant, dataset, "e.txt", TEXT)
    assert _put(api, tenant, dataset, doc, "disable").status_code == 200
    with run_worker(api.runtime):
        assert wait_final(api, tenant, dataset, doc)["indexing_status"] == "completed"
        assert last_result(api, REMOVE) == {"keywords": 0}
        assert segments(api, doc)
        assert keyword_rows(api, doc) == []
        assert _search(api, tenant, dataset, "kafka") == []
        _put(api, tenant, dataset, doc, "enable")
        assert last_result(api, ADD)["keywords"] > 0
    assert _search(api, tenant, dataset, "kafka") == [doc]


def test_retry_indexes_failed_documents_again(api: Api, tenant: TenantCredentials) -> None:
    """A batch refused by the plan it found, then retried: a retry is not an upload."""
    dataset = new_dataset(api, tenant)
    created = upload_files(api, tenant, dataset, "handbook.md", "status.html")
    docs = [d["id"] for d in created.json["documents"]]
    downgrade = api.call(
        "PATCH", f"/v1/tenants/{tenant.id}", json={"plan": "sandbox"}, headers=ADMIN
    )
    assert downgrade.status_code == 200
    with run_worker(api.runtime):
        assert last_result(api, INDEX) == dict.fromkeys(docs, "error")
        retried = api.call("POST", docs_path(dataset, "/retry"), tenant, json={"ids": docs[:1]})
        assert retried.status_code == 200, retried.json
        assert retried.json["documents"][0]["indexing_status"] == "waiting"
        assert retried.json["documents"][0]["error"] is None
        assert last_result(api, RETRY) == {docs[0]: "completed"}

        busy = api.call("POST", docs_path(dataset, "/retry"), tenant, json={"ids": docs})
        assert (busy.status_code, busy.json["code"]) == (409, "conflict")
        assert busy.json["details"]["indexing_status"] == {docs[0]: "completed"}
        assert len(outbox_ids(api, RETRY)) == 1, "a refused retry enqueues nothing"
        missing = api.call("POST", docs_path(dataset, "/retry"), tenant, json={"ids": ["nope"]})
        assert missing.status_code == 404

        api.ok("POST", docs_path(dataset, "/retry"), tenant, json={"ids": docs[1:]})
        assert task_result(api, outbox_ids(api, RETRY)[-1]) == {docs[1]: "completed"}
    assert transitions(api, tenant, dataset, docs[0]) == [
        (None, "waiting"),
        ("waiting", "error"),
        ("error", "waiting"),
        *LIFECYCLE[1:],
    ]
    assert status_log(api, tenant, dataset, docs[0])[2]["reason"] == "retry"


def test_batch_delete_removes_documents_and_their_index(
    api: Api, tenant: TenantCredentials, dataset: str
) -> None:
    first = upload_text(api, tenant, dataset, "f.txt", TEXT)
    second = upload_text(api, tenant, dataset, "g.txt", "Kafka only.")
    kept = upload_text(api, tenant, dataset, "h.txt", "Kafka kept.")
    path = docs_path(dataset, "/batch-delete")
    with run_worker(api.runtime):
        for doc in (first, second, kept):
            wait_final(api, tenant, dataset, doc)
        unknown = api.call("POST", path, tenant, json={"ids": [first, "missing"]})
        assert (unknown.status_code, unknown.json["details"]) == (404, {"ids": ["missing"]})
        assert len(api.rows(Document)) == 3, "all or nothing"
        assert api.call("POST", path, tenant, json={"ids": []}).status_code == 400

        deleted = api.call("POST", path, tenant, json={"ids": [first, second, first]})
        assert deleted.status_code == 204
        assert [row.id for row in api.rows(Document)] == [kept]
        cleaned = last_result(api, BATCH_CLEAN)
        assert cleaned["alive"] == 0
    for doc in (first, second):
        assert segments(api, doc) == []
        assert api.rows(SegmentKeyword, document_id=doc) == []
        assert api.rows(DocumentStatusLog, document_id=doc) == []
        assert api.call("GET", docs_path(dataset, f"/{doc}"), tenant).status_code == 404
    assert _search(api, tenant, dataset, "kafka") == [kept]
