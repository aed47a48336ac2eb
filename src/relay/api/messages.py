"""Messages of the calling tenant's apps."""

from __future__ import annotations

from flask import Blueprint, Response
from pydantic import BaseModel, ConfigDict, Field

from relay.api.auth import current_runtime, tenant_id
from relay.api.body import parse_body, parse_query, respond
from relay.api.openapi import TENANT, documented
from relay.services.message_service import (
    DEFAULT_PROVIDER,
    MessagePage,
    MessageService,
    MessageView,
)
from relay.services.pagination import PageParams

messages = Blueprint("messages", __name__)

_TAGS = ("messages",)
_MAX_TOKENS = 10**9


class MessageCreate(BaseModel):
    """An answered query, with its token usage."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=100_000)
    answer: str = Field(max_length=1_000_000)
    conversation_id: str | None = Field(
        None, max_length=64, description="Continue this conversation; omit to start one"
    )
    provider: str = Field(DEFAULT_PROVIDER, min_length=1, max_length=255)
    message_tokens: int = Field(ge=0, le=_MAX_TOKENS)
    answer_tokens: int = Field(ge=0, le=_MAX_TOKENS)


class MessageListQuery(PageParams):
    """A page of messages, optionally of one conversation."""

    conversation_id: str | None = Field(None, max_length=64)


def _service() -> MessageService:
    return MessageService(current_runtime())


@messages.post("/apps/<app_id>/messages")
@documented(
    tags=_TAGS,
    security=TENANT,
    json=MessageCreate,
    ok=(201, MessageView),
    errors=(404, 429),
)
def create_message(app_id: str) -> tuple[Response, int]:
    """Record a message; 429 ``quota_exceeded`` (and nothing stored) when over quota."""
    body = parse_body(MessageCreate)
    created = _service().create(
        tenant_id(),
        app_id,
        query=body.query,
        answer=body.answer,
        message_tokens=body.message_tokens,
        answer_tokens=body.answer_tokens,
        conversation_id=body.conversation_id,
        provider=body.provider,
    )
    return respond(created, 201)


@messages.get("/apps/<app_id>/messages")
@documented(
    tags=_TAGS, security=TENANT, query=MessageListQuery, ok=(200, MessagePage), errors=(404,)
)
def list_messages(app_id: str) -> tuple[Response, int]:
    """List the app's messages, newest first."""
    params = parse_query(MessageListQuery)
    page = _service().list_messages(
        tenant_id(), app_id, params, conversation_id=params.conversation_id
    )
    return respond(page)
