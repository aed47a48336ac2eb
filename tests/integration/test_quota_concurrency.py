"""50 concurrent messages against a provider quota that fits exactly 10: exactly 10 are recorded.

Everything is real: the API (over a real HTTP server on loopback, or one Flask test client per
thread), the message service, and relay's own critical ``message_was_created`` receiver, whose
single conditional UPDATE is the only thing standing between 50 racing requests and an
overspent quota. No test receivers are connected. Passes on SQLite (write transactions
serialised) and on PostgreSQL (row locks, the UPDATE re-checked against the committed row).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import httpx
import pytest
from sqlalchemy import CursorResult, func, select, update
from werkzeug.serving import make_server

from relay.events.handlers.message_quota import spend_quota
from relay.models import Conversation, Message, ProviderQuota, QuotaType
from tests.integration.test_api_support import Api, TenantCredentials
from tests.waiting import run_blocked

REQUESTS = 50
FITTING = 10
TOKENS = 7  # per message: 3 prompt + 4 answer
# Room for 10 messages and then 6 units, which is less than an 11th message needs.
QUOTA_LIMIT = FITTING * TOKENS + TOKENS - 1
PROVIDER = "openai"

Post = Callable[[str, dict[str, str], dict[str, Any]], tuple[int, dict[str, Any]]]


@contextmanager
def served(flask_app: Any) -> Iterator[str]:
    """The app behind a real threaded WSGI server on 127.0.0.1; yields its base URL."""
    server = make_server("127.0.0.1", 0, flask_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="wsgi", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


@contextmanager
def http_transport(api: Api) -> Iterator[Callable[[], Post]]:
    """Each thread gets its own httpx client to the real server."""
    with served(api.app) as base_url:

        def new_client() -> Post:
            client = httpx.Client(base_url=base_url, timeout=120)

            def post(path: str, headers: dict[str, str], body: dict[str, Any]) -> Any:
                with client:
                    response = client.post(path, headers=headers, json=body)
                    return response.status_code, response.json()

            return post

        yield new_client


@contextmanager
def flask_test_clients(api: Api) -> Iterator[Callable[[], Post]]:
    """Each thread gets its own Flask test client (the app is shared, as in a real server)."""

    def new_client() -> Post:
        client = api.app.test_client()

        def post(path: str, headers: dict[str, str], body: dict[str, Any]) -> Any:
            response = client.post(path, headers=headers, json=body)
            return response.status_code, response.get_json()

        return post

    yield new_client


TRANSPORTS = {"wsgi_server": http_transport, "test_client": flask_test_clients}


def limit_quota(api: Api, tenant: TenantCredentials, limit: int) -> None:
    """Set the tenant's default trial quota for ``PROVIDER`` (created by tenant_was_created)."""
    with api.runtime.db.transaction() as session:
        changed = session.execute(
            update(ProviderQuota)
            .where(
                ProviderQuota.tenant_id == tenant.id,
                ProviderQuota.provider == PROVIDER,
                ProviderQuota.quota_type == QuotaType.TRIAL,
            )
            .values(quota_limit=limit, quota_used=0)
        )
        assert cast(CursorResult[Any], changed).rowcount == 1, "the default trial quota row"


def fire(new_client: Callable[[], Post], path: str, headers: dict[str, str]) -> list[Any]:
    """``REQUESTS`` POSTs, each from its own thread and client, released at the same instant."""
    start = threading.Barrier(REQUESTS)
    outcomes: list[Any] = [None] * REQUESTS

    def one(index: int) -> None:
        try:
            post = new_client()
            body = {
                "query": f"question {index}",
                "answer": "answer",
                "message_tokens": 3,
                "answer_tokens": TOKENS - 3,
                "provider": PROVIDER,
            }
            start.wait(timeout=60)
            outcomes[index] = post(path, headers, body)
        except BaseException as exc:  # reported below, with the thread it happened in
            outcomes[index] = exc

    threads = [threading.Thread(target=one, args=(i,), name=f"msg-{i}") for i in range(REQUESTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not any(t.is_alive() for t in threads), "a request never returned"
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert not errors, errors
    return outcomes


def count(api: Api, model: Any, **where: Any) -> int:
    with api.runtime.db.session() as session:
        return int(session.scalar(select(func.count()).select_from(model).filter_by(**where)) or 0)


@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
def test_fifty_concurrent_messages_against_a_quota_of_ten(api: Api, transport: str) -> None:
    tenant = api.create_tenant()
    bystander = api.create_tenant(name="bystander")
    app_id = api.ok("POST", "/v1/apps", tenant, 201, json={"name": "bot", "mode": "chat"})["id"]
    limit_quota(api, tenant, QUOTA_LIMIT)

    with TRANSPORTS[transport](api) as new_client:
        outcomes = fire(new_client, f"/v1/apps/{app_id}/messages", tenant.headers)

    statuses = Counter(status for status, _ in outcomes)
    assert statuses == {201: FITTING, 429: REQUESTS - FITTING}, statuses
    refused = [body for status, body in outcomes if status == 429]
    assert {body["code"] for body in refused} == {"quota_exceeded"}
    accepted = {body["id"] for status, body in outcomes if status == 201}
    assert len(accepted) == FITTING

    # Exactly the accepted messages exist (each in the conversation it started), nothing else.
    rows = api.rows(Message, tenant_id=tenant.id)
    assert {row.id for row in rows} == accepted
    assert {row.message_tokens + row.answer_tokens for row in rows} == {TOKENS}
    assert count(api, Conversation, tenant_id=tenant.id) == FITTING
    quotas = {(q.provider, q.quota_type): q for q in api.rows(ProviderQuota, tenant_id=tenant.id)}
    assert quotas[(PROVIDER, QuotaType.TRIAL)].quota_used == FITTING * TOKENS
    assert quotas[(PROVIDER, QuotaType.TRIAL)].quota_limit == QUOTA_LIMIT
    others = {key: q.quota_used for key, q in quotas.items() if key != (PROVIDER, QuotaType.TRIAL)}
    assert set(others.values()) <= {0}, "no other quota row was charged"
    assert {q.quota_used for q in api.rows(ProviderQuota, tenant_id=bystander.id)} == {0}

    # The quota is really spent: one more message (more than the units left) is refused.
    one_more = {"query": "one more", "answer": "no", "message_tokens": TOKENS, "answer_tokens": 0}
    again = api.call("POST", f"/v1/apps/{app_id}/messages", tenant, json=one_more)
    assert (again.status_code, again.json["code"]) == (429, "quota_exceeded")


def test_a_quota_row_filled_by_a_concurrent_spend_falls_through_to_the_next(
    api: Api, request: pytest.FixtureRequest
) -> None:
    """Trial full by the time the request's UPDATE gets the row: the paid row must pay instead.

    Deterministic: the test holds a transaction that spends the trial's last units while the
    request (in a thread) blocks on that row, then commits.
    """
    tenant = api.create_tenant()
    app_id = api.ok("POST", "/v1/apps", tenant, 201, json={"name": "bot", "mode": "chat"})["id"]
    limit_quota(api, tenant, TOKENS)  # room for one message
    with api.runtime.db.transaction() as session:
        session.add(
            ProviderQuota(
                tenant_id=tenant.id,
                provider=PROVIDER,
                quota_type=QuotaType.PAID,
                quota_limit=100 * TOKENS,
            )
        )

    def post_message() -> tuple[int, Any]:
        body = {"query": "q", "answer": "a", "message_tokens": TOKENS, "answer_tokens": 0}
        response = api.app.test_client().post(
            f"/v1/apps/{app_id}/messages", headers=tenant.headers, json=body
        )
        return response.status_code, response.get_json()

    with api.runtime.db.transaction() as session:
        assert spend_quota(session, tenant.id, PROVIDER, TOKENS)  # the trial's last units
        join = run_blocked(api.runtime, post_message)
    status, body = join()
    assert status == 201, body
    used = {q.quota_type: q.quota_used for q in api.rows(ProviderQuota, tenant_id=tenant.id)}
    assert (used[QuotaType.TRIAL], used[QuotaType.PAID]) == (TOKENS, TOKENS)
