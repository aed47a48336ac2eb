"""The dashboard through Flask's test client: sign-in, roles, CSRF, every page renders."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from flask.testing import FlaskClient

from relay.config import Settings
from relay.models import TaskRecord
from tests.integration.test_api_support import ADMIN_TOKEN, Api, admin_api

READONLY = "read-only-token-for-tests"


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    configured = settings.model_copy(
        update={"api": settings.api.model_copy(update={"readonly_token": READONLY})}
    )
    with admin_api(configured) as driver:
        yield driver


def _client(api: Api, token: str | None) -> FlaskClient:
    client = api.app.test_client()
    client.environ_base["wsgi.url_scheme"] = "https"  # the session cookie is Secure
    if token is not None:
        form = client.get("/dashboard/login")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.get_data(as_text=True))
        assert csrf is not None
        answer = client.post("/dashboard/login", data={"token": token, "csrf_token": csrf[1]})
        assert answer.status_code == 302, answer.get_data(as_text=True)
    return client


def _csrf(client: FlaskClient, page: str = "/dashboard/") -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get(page).get_data(as_text=True))
    assert found is not None
    return found[1]


def _failed_task(api: Api, tenant_id: str) -> str:
    task_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    api.add(
        TaskRecord(
            id=task_id,
            name="relay.mail.send",
            queue="mail",
            tenant_id=tenant_id,
            args=["secret@example.test"],
            kwargs={},
            status="FAILURE",
            attempts=3,
            worker="celery@w1",
            error="FatalTaskError: 550 rejected",
            traceback="Traceback (most recent call last):\n  boom\nFatalTaskError: 550",
            enqueued_at=now - timedelta(seconds=5),
            started_at=now - timedelta(seconds=4),
            finished_at=now,
        )
    )
    return task_id


def test_pages_need_a_session_and_a_right_token(api: Api) -> None:
    anonymous = _client(api, None)
    answer = anonymous.get("/dashboard/tasks")
    assert answer.status_code == 302
    assert "/dashboard/login" in answer.headers["Location"]
    htmx = anonymous.get("/dashboard/", headers={"HX-Request": "true"})
    assert (htmx.status_code, htmx.headers["HX-Redirect"]) == (401, "/dashboard/login")
    form = anonymous.get("/dashboard/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert csrf is not None
    wrong = anonymous.post("/dashboard/login", data={"token": "nope", "csrf_token": csrf[1]})
    assert wrong.status_code == 401
    # A sign-in without the form's token is refused (login CSRF).
    assert anonymous.post("/dashboard/login", data={"token": ADMIN_TOKEN}).status_code == 403
    admin = _client(api, ADMIN_TOKEN)
    cookie = admin.get_cookie("relay_dashboard", path="/dashboard")
    assert cookie is not None
    assert cookie.secure
    assert cookie.http_only
    assert cookie.same_site == "Lax"


def test_every_page_renders_and_a_failed_task_is_found_by_tenant(api: Api) -> None:
    acme, globex = api.create_tenant("acme"), api.create_tenant("globex")
    task_id = _failed_task(api, acme.id)
    _failed_task(api, globex.id)
    admin = _client(api, ADMIN_TOKEN)
    for page in ("/", "/queues", "/tenants", "/tasks", "/dead-letters", "/runs"):
        answer = admin.get("/dashboard" + page)
        assert answer.status_code == 200, (page, answer.get_data(as_text=True)[:500])
    found = admin.get(f"/dashboard/tasks?tenant={acme.id}&status=FAILURE").get_data(as_text=True)
    assert task_id in found
    assert found.count("/dashboard/tasks/") == 1
    detail = admin.get(f"/dashboard/tasks/{task_id}").get_data(as_text=True)
    assert "FatalTaskError: 550" in detail
    assert "secret@example.test" not in detail  # arguments are never shown
    assert admin.get("/dashboard/tasks/nope").status_code == 404
    assert admin.get("/dashboard/tasks?status=BOGUS").status_code == 400
    overview = admin.get("/dashboard/").get_data(as_text=True)
    assert 'id="failure-rate">100.0%' in overview
    queues = admin.get("/dashboard/queues").get_data(as_text=True)
    mail_row = queues[queues.index("<td>mail</td>") :].split("</tr>")[0]
    assert '<td class="num">100%</td>' in mail_row  # both mail tasks failed this hour


def test_changes_need_the_admin_role_and_the_csrf_token(api: Api) -> None:
    tenant = api.create_tenant()
    letter = api.runtime.lifecycle.dead_letters.bury(
        task_id=str(uuid.uuid4()),
        task_name="relay.ping",
        queue="monitor",
        tenant_id=tenant.id,
        args=["hello"],
        kwargs={},
        headers={"idempotency_key": f"k-{uuid.uuid4()}", "tenant_id": tenant.id},
        reason="exhausted",
        error="ConnectionError: reset",
        traceback="Traceback...",
        attempts=3,
    )
    viewer = _client(api, READONLY)
    page = viewer.get(f"/dashboard/dead-letters/{letter}").get_data(as_text=True)
    assert "Replay" not in page
    refused = viewer.post(
        f"/dashboard/dead-letters/{letter}/replay", headers={"X-CSRF-Token": _csrf(viewer)}
    )
    assert refused.status_code == 403
    # Signing out needs the CSRF token too, and any role may do it.
    assert viewer.post("/dashboard/logout").status_code == 403
    out = viewer.post("/dashboard/logout", data={"csrf_token": _csrf(viewer)})
    assert out.status_code == 302
    assert viewer.get("/dashboard/").status_code == 302  # signed out: back to the sign-in page
    admin = _client(api, ADMIN_TOKEN)
    assert admin.post(f"/dashboard/dead-letters/{letter}/replay").status_code == 403
    assert api.runtime.lifecycle.dead_letters.get(letter).replayed_at is None
    replayed = admin.post(
        f"/dashboard/dead-letters/{letter}/replay", headers={"X-CSRF-Token": _csrf(admin)}
    )
    assert replayed.status_code == 200
    assert "Replayed as" in replayed.get_data(as_text=True)
    # Purge asks first, and deletes only once confirmed.
    token = _csrf(admin)
    asked = admin.post(
        "/dashboard/dead-letters/purge", data={"tenant": tenant.id, "csrf_token": token}
    )
    assert 'id="purge-count">1<' in asked.get_data(as_text=True)
    assert api.runtime.lifecycle.dead_letters.count(tenant.id) == 1
    done = admin.post(
        "/dashboard/dead-letters/purge",
        data={"tenant": tenant.id, "csrf_token": token, "confirm": "purge"},
    )
    assert "Purged 1 dead letter" in done.get_data(as_text=True)
    assert api.runtime.lifecycle.dead_letters.count(tenant.id) == 0
