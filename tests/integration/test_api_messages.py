"""Messages over the tenant API: conversations, the message event, quota refusal, history."""

from __future__ import annotations

from typing import Any

import pytest

from relay.errors import QuotaExceeded
from relay.events import signals
from relay.events.bus import EventContext
from relay.events.payloads import MessageCreated
from relay.models import Conversation, Message
from tests.integration.test_api_support import Api, TenantCredentials, captured_events


@pytest.fixture
def app_id(api: Api, tenant: TenantCredentials) -> str:
    created = api.ok("POST", "/v1/apps", tenant, 201, json={"name": "bot", "mode": "chat"})
    return str(created["id"])


def _message(**overrides: Any) -> dict[str, Any]:
    return {
        "query": "hi?",
        "answer": "hello!",
        "message_tokens": 3,
        "answer_tokens": 4,
        **overrides,
    }


def test_first_message_starts_a_conversation_and_emits_event(
    api: Api, tenant: TenantCredentials, app_id: str
) -> None:
    with captured_events(api.runtime) as events:
        first = api.ok("POST", f"/v1/apps/{app_id}/messages", tenant, 201, json=_message())
        second = api.ok(
            "POST",
            f"/v1/apps/{app_id}/messages",
            tenant,
            201,
            json=_message(conversation_id=first["conversation_id"], provider="anthropic"),
        )
    assert first["total_tokens"] == 7
    assert (first["query"], first["answer"]) == ("hi?", "hello!")
    assert second["conversation_id"] == first["conversation_id"]
    (conversation,) = api.rows(Conversation)
    assert (conversation.tenant_id, conversation.app_id) == (tenant.id, app_id)
    assert {m.id for m in api.rows(Message, conversation_id=conversation.id)} == {
        first["id"],
        second["id"],
    }
    created = [payload for name, payload in events if name == "message_was_created"]
    assert created == [
        MessageCreated(tenant.id, app_id, conversation.id, first["id"], "openai", 7),
        MessageCreated(tenant.id, app_id, conversation.id, second["id"], "anthropic", 7),
    ]


def test_over_quota_stores_nothing(api: Api, tenant: TenantCredentials, app_id: str) -> None:
    def refuse(payload: MessageCreated, _ctx: EventContext) -> None:
        raise QuotaExceeded("quota used up", details={"provider": payload.provider})

    api.runtime.bus.connect(signals.message_was_created, refuse, critical=True)
    try:
        response = api.call("POST", f"/v1/apps/{app_id}/messages", tenant, json=_message())
    finally:
        api.runtime.bus.disconnect(signals.message_was_created, refuse)
    assert response.status_code == 429
    assert response.json["code"] == "quota_exceeded"
    assert api.rows(Message) == []
    assert api.rows(Conversation) == [], "the new conversation rolled back with the message"


def test_conversation_must_belong_to_the_app(
    api: Api, tenant: TenantCredentials, app_id: str
) -> None:
    other_app = api.ok("POST", "/v1/apps", tenant, 201, json={"name": "b", "mode": "chat"})["id"]
    elsewhere = api.ok("POST", f"/v1/apps/{other_app}/messages", tenant, 201, json=_message())
    for conversation_id in [elsewhere["conversation_id"], "missing"]:
        response = api.call(
            "POST",
            f"/v1/apps/{app_id}/messages",
            tenant,
            json=_message(conversation_id=conversation_id),
        )
        assert response.status_code == 404
        assert response.json["message"] == "conversation not found"
        listed = api.call(
            "GET", f"/v1/apps/{app_id}/messages?conversation_id={conversation_id}", tenant
        )
        assert listed.status_code == 404
    assert len(api.rows(Message)) == 1


def test_unknown_app_is_404(api: Api, tenant: TenantCredentials) -> None:
    response = api.call("POST", "/v1/apps/missing/messages", tenant, json=_message())
    assert response.status_code == 404
    assert response.json["message"] == "app not found"
    assert api.call("GET", "/v1/apps/missing/messages", tenant).status_code == 404
    assert api.rows(Conversation) == []


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"query": ""}, "query"),
        ({"message_tokens": -1}, "message_tokens"),
        ({"answer_tokens": "many"}, "answer_tokens"),
        ({"answer_tokens": 10**12}, "answer_tokens"),
        ({"provider": ""}, "provider"),
        ({"tenant_id": "x"}, "tenant_id"),
    ],
)
def test_bad_message_input_is_a_400(
    api: Api, tenant: TenantCredentials, app_id: str, overrides: dict[str, Any], field: str
) -> None:
    response = api.call("POST", f"/v1/apps/{app_id}/messages", tenant, json=_message(**overrides))
    assert response.status_code == 400
    assert response.json["code"] == "invalid_input"
    assert [d["field"] for d in response.json["details"]] == [field]
    assert api.rows(Message) == []


def test_missing_fields_are_listed(api: Api, tenant: TenantCredentials, app_id: str) -> None:
    response = api.call("POST", f"/v1/apps/{app_id}/messages", tenant, json={})
    assert response.status_code == 400
    fields = {d["field"] for d in response.json["details"]}
    assert fields == {"query", "answer", "message_tokens", "answer_tokens"}


def test_history_lists_newest_first_and_filters(
    api: Api, tenant: TenantCredentials, app_id: str
) -> None:
    first = api.ok("POST", f"/v1/apps/{app_id}/messages", tenant, 201, json=_message(query="1"))
    conversation = first["conversation_id"]
    for query in ["2", "3"]:
        api.ok(
            "POST",
            f"/v1/apps/{app_id}/messages",
            tenant,
            201,
            json=_message(query=query, conversation_id=conversation),
        )
    api.ok("POST", f"/v1/apps/{app_id}/messages", tenant, 201, json=_message(query="other"))

    everything = api.ok("GET", f"/v1/apps/{app_id}/messages", tenant)
    assert everything["total"] == 4
    in_conversation = api.ok(
        "GET", f"/v1/apps/{app_id}/messages?conversation_id={conversation}&limit=2", tenant
    )
    assert [m["query"] for m in in_conversation["data"]] == ["3", "2"]
    assert (in_conversation["total"], in_conversation["has_more"]) == (3, True)
    assert api.call("GET", f"/v1/apps/{app_id}/messages?offset=-1", tenant).status_code == 400
