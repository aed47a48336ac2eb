"""Chat messages to the calling tenant's advanced-chat and chat apps, and completions of its
completion apps (streamed over SSE, or blocking).

The stream is a workflow run's (``text_chunk`` events carry the answer) and ends with
``message_end`` once the message is recorded; resume and stop it through
``/v1/workflows/runs/<run_id>/...`` like any run.
"""

from __future__ import annotations

from typing import Any, Literal

from flask import Blueprint, Response
from pydantic import BaseModel, ConfigDict, Field
from werkzeug.wrappers import Response as WerkzeugResponse

from relay.api.auth import current_runtime, tenant_id
from relay.api.body import parse_body, respond
from relay.api.openapi import TENANT, documented, streams
from relay.api.workflows import EndUser, sse_response
from relay.resilience.shutdown import DRAIN
from relay.services.chat_service import ChatResult, ChatService
from relay.services.workflow_run_service import WorkflowRunService

chat = Blueprint("chat", __name__)
streams("post", "/v1/chat-messages")
streams("post", "/v1/completion-messages")


class ChatMessageRequest(BaseModel):
    """A user's message to an advanced-chat or chat app."""

    model_config = ConfigDict(extra="forbid")

    app_id: str = Field(min_length=1, max_length=64)
    query: str = Field(min_length=1, max_length=100_000)
    inputs: dict[str, Any] = Field(default_factory=dict)
    response_mode: Literal["streaming", "blocking"] = "streaming"
    conversation_id: str | None = Field(
        None, max_length=64, description="Continue this conversation; omit to start one"
    )
    user: EndUser


@chat.post("/chat-messages")
@documented(
    tags=("chat",), security=TENANT, json=ChatMessageRequest, ok=(200, ChatResult),
    errors=(404, 409, 429),
)  # fmt: skip
def send_chat_message() -> WerkzeugResponse | tuple[Response, int]:
    """Send a message: ``text/event-stream`` ending in ``message_end``, or the answer (blocking)."""
    body = parse_body(ChatMessageRequest)
    runtime = current_runtime()
    tenant = tenant_id()
    service = ChatService(runtime)
    started = service.start(
        tenant,
        body.app_id,
        user=body.user,
        query=body.query,
        inputs=body.inputs,
        conversation_id=body.conversation_id,
    )
    if body.response_mode == "blocking":
        return respond(service.wait(tenant, started, body.user))
    events = WorkflowRunService(runtime).events(
        tenant, started.run_id, body.user, until=DRAIN.is_set
    )
    response = sse_response(events, started.run_id, kind="chat")
    if started.conversation_id:
        response.headers["X-Relay-Conversation-Id"] = started.conversation_id
    return response


class CompletionMessageRequest(BaseModel):
    """A completion app's form values (and an optional ``query``)."""

    model_config = ConfigDict(extra="forbid")

    app_id: str = Field(min_length=1, max_length=64)
    inputs: dict[str, Any] = Field(default_factory=dict)
    query: str = Field("", max_length=100_000)
    response_mode: Literal["streaming", "blocking"] = "streaming"
    user: EndUser


@chat.post("/completion-messages")
@documented(
    tags=("chat",), security=TENANT, json=CompletionMessageRequest, ok=(200, ChatResult),
    errors=(404, 409, 429),
)  # fmt: skip
def send_completion_message() -> WerkzeugResponse | tuple[Response, int]:
    """Run a completion app: ``text/event-stream`` ending in ``message_end``, or the answer."""
    body = parse_body(CompletionMessageRequest)
    runtime = current_runtime()
    tenant = tenant_id()
    service = ChatService(runtime)
    started = service.complete(
        tenant, body.app_id, user=body.user, query=body.query, inputs=body.inputs
    )
    if body.response_mode == "blocking":
        return respond(service.wait(tenant, started, body.user))
    events = WorkflowRunService(runtime).events(
        tenant, started.run_id, body.user, until=DRAIN.is_set
    )
    return sse_response(events, started.run_id, kind="chat")
