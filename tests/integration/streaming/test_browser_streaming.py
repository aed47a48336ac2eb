"""Browsers on the streaming API: stream tokens, CORS, 204 after the end, the terminal name."""

from __future__ import annotations

import time

import httpx
import pytest

from relay.config import Settings
from relay.streaming.sse import SSEParser
from tests.integration.streaming.support import (
    SSEClient,
    Stack,
    run_id_of,
    streaming_stack,
    without_pings,
    workflow_graph,
)
from tests.integration.test_api_support import ADMIN

ORIGIN = "http://page.example"


@pytest.fixture
def stack(settings: Settings) -> Stack:
    configured = settings.model_copy(
        update={"api": settings.api.model_copy(update={"cors_origins": [ORIGIN]})}
    )
    with streaming_stack(configured) as served:
        yield served  # type: ignore[misc]


def _finished_run(stack: Stack, user: str = "u") -> str:
    client = SSEClient(stack.url, stack.tenant)
    try:
        events = client.run(stack.publish_app(workflow_graph()), user, topic="t")
    finally:
        client.close()
    assert events[-1].event == "workflow_succeeded"
    return run_id_of(events)


def _token(stack: Stack, run_id: str, user: str = "u") -> dict[str, str]:
    answer: dict[str, str] = stack.api.ok(
        "POST", f"/v1/workflows/runs/{run_id}/stream-token", stack.tenant, json={"user": user}
    )
    return answer


def test_a_stream_token_reads_its_run_once_and_the_resume_after_the_end_is_204(
    stack: Stack,
) -> None:
    run_id = _finished_run(stack)
    issued = _token(stack, run_id)
    assert issued["run_id"] == run_id
    with httpx.Client(base_url=stack.url, timeout=30) as browser:  # no Authorization header
        response = browser.get(issued["events_url"], headers={"Origin": ORIGIN})
        assert response.status_code == 200
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
        events = without_pings(SSEParser().feed(response.text))
        assert events[-1].event == "workflow_succeeded"
        assert {e.json()["workflow_run_id"] for e in events} == {run_id}
        # EventSource reconnects with the last id it saw: the end of the run answers 204.
        again = browser.get(issued["events_url"], headers={"Last-Event-ID": str(events[-1].id)})
        assert (again.status_code, again.content) == (204, b"")
        # Resuming in the middle still streams the rest.
        middle = browser.get(issued["events_url"], headers={"Last-Event-ID": str(events[0].id)})
        assert [e.id for e in without_pings(SSEParser().feed(middle.text))] == [
            e.id for e in events[1:]
        ]


def test_a_stream_token_is_refused_for_another_run_another_route_or_when_forged(
    stack: Stack,
) -> None:
    first, second = _finished_run(stack), _finished_run(stack)
    token = _token(stack, first)["token"]
    with httpx.Client(base_url=stack.url, timeout=30) as browser:
        other = browser.get(f"/v1/workflows/runs/{second}/events", params={"stream_token": token})
        assert other.status_code == 401
        detail = browser.get(f"/v1/workflows/runs/{first}", params={"stream_token": token})
        assert detail.status_code == 401
        forged = browser.get(
            f"/v1/workflows/runs/{first}/events", params={"stream_token": token[:-2] + "xx"}
        )
        assert (forged.status_code, forged.json()["code"]) == (401, "unauthorized")
    # Only the run's end user gets a token.
    refused = stack.api.call(
        "POST", f"/v1/workflows/runs/{first}/stream-token", stack.tenant, json={"user": "other"}
    )
    assert refused.status_code == 404
    other_tenant = stack.api.create_tenant("other")
    refused = stack.api.call(
        "POST", f"/v1/workflows/runs/{first}/stream-token", other_tenant, json={"user": "u"}
    )
    assert refused.status_code == 404


def test_a_stream_token_expires_and_dies_with_its_key(settings: Settings) -> None:
    short = settings.model_copy(
        update={"api": settings.api.model_copy(update={"stream_token_ttl": 1})}
    )
    with streaming_stack(short) as stack:
        run_id = _finished_run(stack)
        url = _token(stack, run_id)["events_url"]
        revoked_url = _token(stack, run_id)["events_url"]
        with httpx.Client(base_url=stack.url, timeout=30) as browser:
            assert browser.get(url).status_code == 200
            revoked = stack.api.call(
                "DELETE",
                f"/v1/tenants/{stack.tenant.id}/api-keys/{stack.tenant.key_id}",
                headers=ADMIN,
            )
            assert revoked.status_code in (200, 204)
            assert browser.get(revoked_url).status_code == 401
            time.sleep(2.1)
            expired = browser.get(url)
            assert expired.status_code == 401
            assert "expired" in expired.json()["message"]


def test_cors_preflight_needs_no_credentials_and_only_allowed_origins_get_headers(
    stack: Stack,
) -> None:
    path = "/v1/workflows/runs/any/events"
    with httpx.Client(base_url=stack.url, timeout=30) as browser:
        allowed = browser.options(
            path,
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "last-event-id",
            },
        )
        assert allowed.status_code == 204
        assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert "Last-Event-ID" in allowed.headers["Access-Control-Allow-Headers"]
        stranger = browser.options(
            path,
            headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"},
        )
        assert stranger.status_code == 204
        assert not [h for h in stranger.headers if h.lower().startswith("access-control-")]
        refused = browser.get(path, headers={"Origin": ORIGIN})
        assert refused.status_code == 401
        assert refused.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert (
            "access-control-allow-origin"
            not in browser.get(path, headers={"Origin": "http://evil.example"}).headers
        )
