"""Indexing end to end: real documents uploaded over the API, indexed by a real worker.

A multi-page Markdown handbook, an HTML page with scripts and styles, and a plain text; their
segments and keyword rows; the status sequence each document went through (its status log);
the plan limits (a sandbox batch of two refused with the reason on each document, at the API
and in the task); the keyword search endpoint and ``SqlKnowledgeIndex``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from relay.config import Settings
from relay.models import Document
from relay.services.keyword_index import tokenize
from relay.services.segment_service import SqlKnowledgeIndex
from relay.workflow.knowledge import KnowledgeIndex
from tests.conftest import run_worker
from tests.integration.test_api_support import ADMIN, Api
from tests.integration.test_indexing_support import (
    LIFECYCLE,
    docs_path,
    fixture_text,
    indexing_api,
    keyword_rows,
    last_result,
    new_dataset,
    segments,
    status_log,
    transitions,
    upload_files,
    upload_text,
    wait_final,
)

INDEX = "relay.dataset.index_documents"
NOTES = "Plain notes.\n\nThe quarterly review covers latency, uptime and the incident budget."


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    with indexing_api(settings) as driver:
        yield driver


@pytest.fixture
def worker(api: Api) -> Iterator[Any]:
    with run_worker(api.runtime) as w:
        yield w


@pytest.fixture
def indexed(api: Api, worker: Any) -> dict[str, Any]:
    """A professional tenant's dataset with the handbook, the status page and notes indexed."""
    tenant = api.create_tenant(plan="professional")
    dataset = new_dataset(api, tenant)
    response = upload_files(api, tenant, dataset, "handbook.md", "status.html")
    assert response.status_code == 201, response.json
    docs = {d["name"]: d["id"] for d in response.json["documents"]}
    docs["notes.txt"] = upload_text(api, tenant, dataset, "notes.txt", NOTES)
    views = {name: wait_final(api, tenant, dataset, doc) for name, doc in docs.items()}
    return {"tenant": tenant, "dataset": dataset, "docs": docs, "views": views}


def _texts(api: Api, doc: str) -> list[str]:
    return [segment.content for segment in segments(api, doc)]


def test_documents_go_through_every_status_in_order(api: Api, indexed: dict[str, Any]) -> None:
    tenant, dataset = indexed["tenant"], indexed["dataset"]
    for name, doc in indexed["docs"].items():
        view = indexed["views"][name]
        assert view["indexing_status"] == "completed", view
        assert transitions(api, tenant, dataset, doc) == LIFECYCLE, name
        log = status_log(api, tenant, dataset, doc)
        assert log[0]["reason"] == "uploaded"
        assert all(entry["seconds"] >= 0 for entry in log[2:]), "time in each phase"
        assert [entry["at"] for entry in log] == sorted(entry["at"] for entry in log)
        assert set(view["timings"]) == {"parsing", "cleaning", "splitting", "indexing"}
        assert view["processing_started_at"] <= view["completed_at"]
        assert view["error"] is None
        stored = segments(api, doc)
        assert view["segment_count"] == len(stored)
        assert view["word_count"] == sum(segment.word_count for segment in stored)


def test_markdown_is_split_into_clean_overlapping_segments(
    api: Api, indexed: dict[str, Any]
) -> None:
    texts = _texts(api, indexed["docs"]["handbook.md"])
    assert len(texts) > 3, "a multi-page handbook makes several segments"
    assert all(0 < len(text) <= 500 for text in texts)
    joined = "\n".join(texts)
    for markup in ("#", "**", "```", "](", "<!--", "|", "---"):
        assert markup not in joined, markup
    # The text of headings, lists, quotes, code and tables stays, from every page.
    for kept in (
        "Relay Operations Handbook",
        "Queues and workers",
        "Start one worker per machine with relay worker.",
        "Backpressure matters",
        "Page two: storage",
        "Test the restore procedure every month.",
        "verify_checksum(backup_path)",
        "separator where segments are cut first",
        "Page three: incidents",
        "the head of engineering, for incidents that last longer than four hours.",
    ):
        assert kept in joined, kept
    for before, after in itertools.pairwise(texts):
        # Each segment starts with the last words of the one before (50 characters of overlap),
        # cut at a word boundary.
        head = after.split()[0]
        assert head in before[-60:].split(), (before[-60:], after[:60])


def test_html_keeps_the_visible_text_only(api: Api, indexed: dict[str, Any]) -> None:
    (text,) = _texts(api, indexed["docs"]["status.html"])
    for hidden in ("Head title", "font-family", "hidden-style-rule", "trackingSecret", "alert"):
        assert hidden not in text, hidden
    assert "injected by script" not in text
    assert "Enable JavaScript" not in text, "noscript content is dropped"
    assert "Service status & uptime" in text
    assert "The R&D café opens at 9 am — bring\nyour badge." in text, "entities decoded"
    assert "Use the <status> tag in reports." in text
    assert "Frankfurt healthy" in text
    assert "Contact the operations team for details." in text


def test_each_segment_has_its_keywords_in_the_index(api: Api, indexed: dict[str, Any]) -> None:
    tenant, dataset = indexed["tenant"], indexed["dataset"]
    for doc in indexed["docs"].values():
        stored = segments(api, doc)
        rows = keyword_rows(api, doc)
        assert {(row.tenant_id, row.dataset_id) for row in rows} == {(tenant.id, dataset)}
        by_segment: dict[str, set[str]] = {}
        for row in rows:
            by_segment.setdefault(row.segment_id, set()).add(row.keyword)
        for segment in stored:
            expected = tokenize(segment.content)
            assert segment.keywords == expected
            assert by_segment.get(segment.id, set()) == set(expected)
    notes = segments(api, indexed["docs"]["notes.txt"])
    assert notes[0].keywords == [
        "plain", "notes", "quarterly", "review", "covers", "latency", "uptime", "incident",
        "budget",
    ]  # fmt: skip


def test_keyword_search_ranks_by_matched_words(api: Api, indexed: dict[str, Any]) -> None:
    tenant, dataset, docs = indexed["tenant"], indexed["dataset"], indexed["docs"]
    path = f"/v1/datasets/{dataset}/segments"
    found = api.ok("GET", f"{path}?q=Incident+latency+budget+the&limit=5", tenant)
    assert found["query_terms"] == ["incident", "latency", "budget"]
    best = found["data"][0]
    assert (best["document_id"], best["document_name"]) == (docs["notes.txt"], "notes.txt")
    assert (best["matched"], best["matched_terms"]) == (3, ["incident", "latency", "budget"])
    assert [hit["matched"] for hit in found["data"]] == sorted(
        (hit["matched"] for hit in found["data"]), reverse=True
    )
    assert {hit["document_id"] for hit in found["data"][1:]} >= {docs["handbook.md"]}
    assert len(api.ok("GET", f"{path}?q=incident&limit=1", tenant)["data"]) == 1
    assert api.ok("GET", f"{path}?q=the+a+of", tenant)["data"] == [], "stopwords only"
    assert api.ok("GET", f"{path}?q=zeppelin", tenant)["data"] == []
    assert api.call("GET", f"{path}?q=x&limit=0", tenant).status_code == 400

    other = api.create_tenant("other", plan="professional")
    refused = api.call("GET", f"{path}?q=incident", other)
    assert (refused.status_code, refused.json["code"]) == (404, "not_found")


def test_sql_knowledge_index_serves_the_workflow_protocol(
    api: Api, indexed: dict[str, Any]
) -> None:
    tenant, dataset, docs = indexed["tenant"], indexed["dataset"], indexed["docs"]
    index: KnowledgeIndex = SqlKnowledgeIndex(api.runtime.db)
    hits = index.search(tenant.id, [dataset], "restore the database procedure", top_k=3)
    assert hits, "the storage page matches"
    assert hits[0].document_id == docs["handbook.md"]
    assert hits[0].document_name == "handbook.md"
    assert hits[0].dataset_name == "kb"
    assert "Back up the database every night." in hits[0].content
    assert 0 < hits[-1].score <= hits[0].score <= 1
    assert hits[0].score == 1.0, "restore, database and procedure all in one segment"
    assert len(index.search(tenant.id, [dataset], "incident", top_k=1)) == 1
    assert index.search("someone-else", [dataset], "incident", top_k=5) == []
    assert index.search(tenant.id, ["other-dataset"], "incident", top_k=5) == []
    assert index.search(tenant.id, [dataset], "the of", top_k=5) == []


def test_a_sandbox_batch_of_two_is_refused_with_the_reason_on_each_document(
    api: Api, worker: Any
) -> None:
    tenant = api.create_tenant(plan="sandbox")
    dataset = new_dataset(api, tenant)
    response = upload_files(api, tenant, dataset, "handbook.md", "status.html")
    assert response.status_code == 403
    assert response.json["code"] == "plan_limit"
    reason = "the sandbox plan allows 1 document per upload; this upload has 2"
    assert response.json["message"] == reason
    assert response.json["details"]["documents"] == [
        {"name": "handbook.md", "reason": reason},
        {"name": "status.html", "reason": reason},
    ]
    assert api.rows(Document) == [], "nothing created, nothing indexed"

    # One at a time is what the sandbox plan allows.
    single = upload_files(api, tenant, dataset, "status.html")
    assert single.status_code == 201, single.json
    doc = single.json["documents"][0]["id"]
    assert wait_final(api, tenant, dataset, doc)["indexing_status"] == "completed"


def test_the_task_refuses_a_batch_over_the_plan_it_finds(settings: Settings) -> None:
    """Downgraded between upload and indexing: the batch is not indexed, each document says why."""
    with indexing_api(settings) as api:
        tenant = api.create_tenant(plan="professional")
        dataset = new_dataset(api, tenant)
        response = upload_files(api, tenant, dataset, "handbook.md", "status.html")
        assert response.status_code == 201, response.json
        docs = [d["id"] for d in response.json["documents"]]
        downgraded = api.call(
            "PATCH", f"/v1/tenants/{tenant.id}", json={"plan": "sandbox"}, headers=ADMIN
        )
        assert downgraded.status_code == 200, downgraded.json
        with run_worker(api.runtime):
            outcome = last_result(api, INDEX)
        assert outcome == dict.fromkeys(docs, "error")
        reason = "the sandbox plan allows 1 document per upload; this upload has 2"
        for doc in docs:
            view = api.ok("GET", docs_path(dataset, f"/{doc}"), tenant)
            assert (view["indexing_status"], view["error"]) == ("error", reason)
            assert transitions(api, tenant, dataset, doc) == [
                (None, "waiting"),
                ("waiting", "error"),
            ]
            assert status_log(api, tenant, dataset, doc)[-1]["reason"] == reason
            assert segments(api, doc) == []
            assert keyword_rows(api, doc) == []


def test_the_document_count_of_the_plan_is_enforced(settings: Settings) -> None:
    with indexing_api(settings, document_limit={"sandbox": 2}) as api:
        tenant = api.create_tenant(plan="sandbox")
        first, second = new_dataset(api, tenant), new_dataset(api, tenant)
        upload_text(api, tenant, first, "a.txt", "alpha")
        upload_text(api, tenant, second, "b.txt", "beta")
        refused = api.call(
            "POST", docs_path(first), tenant, json={"name": "c.txt", "content": "gamma"}
        )
        assert (refused.status_code, refused.json["code"]) == (403, "plan_limit")
        reason = "the sandbox plan allows 2 documents; the tenant has 2 and this upload adds 1"
        assert refused.json["details"]["documents"] == [{"name": "c.txt", "reason": reason}]
        assert len(api.rows(Document)) == 2


def test_every_plan_has_a_batch_upload_limit(settings: Settings) -> None:
    with indexing_api(settings, batch_upload_limit=2) as api:
        tenant = api.create_tenant(plan="enterprise")
        dataset = new_dataset(api, tenant)
        response = upload_files(api, tenant, dataset, "handbook.md", "status.html", "handbook.md")
        assert (response.status_code, response.json["code"]) == (403, "plan_limit")
        assert response.json["details"]["limit"] == 2
        assert len(response.json["details"]["documents"]) == 3
        assert upload_files(api, tenant, dataset, "handbook.md", "status.html").status_code == 201


def test_fixture_text_is_what_was_stored(api: Api) -> None:
    """The upload keeps the document as sent: the task, not the request, extracts the text."""
    tenant = api.create_tenant(plan="professional")
    dataset = new_dataset(api, tenant)
    response = upload_files(api, tenant, dataset, "status.html")
    (row,) = api.rows(Document, id=response.json["documents"][0]["id"])
    assert (row.content, row.content_format) == (fixture_text("status.html"), "html")
