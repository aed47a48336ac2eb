"""Chat messages to advanced-chat and chat apps, and completions: a workflow run with
``sys.query`` that ends in a message.

Completion and basic chat apps run the graph their model config describes
(:mod:`relay.workflow.model_config`); a completion's message gets a conversation of its own.

Starting one creates (or continues) the end user's conversation and enqueues the run in one
transaction. The run task records the answer through ``MessageService`` (which emits
``message_was_created``, so the tenant's provider quota is spent or the message refused) and
then ends the stream with ``message_end``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, update

from relay.errors import NotFound
from relay.models import AppMode, Conversation, ConversationStatus, Message, MessageStatus, new_id
from relay.runtime import Runtime
from relay.services.app_service import require_app
from relay.services.message_service import CONVERSATION_NAME_LENGTH, MessageService, MessageView
from relay.services.run_streams import end_user_id
from relay.services.workflow_run_service import (
    MODEL_CONFIG_MODES,
    StartedRun,
    WorkflowRunService,
    WrongAppMode,
)
from relay.streaming import AppQueueEvent, MessageEndEvent
from relay.workflow import ChatMessage
from relay.workflow.model_config import with_defaults

HISTORY_MESSAGES = 50
# Apps that take chat messages: advanced-chat (a workflow) and basic chat (a model config).
CHAT_MODES = frozenset({AppMode.ADVANCED_CHAT, AppMode.CHAT})
# Runs that end in a recorded message.
MESSAGE_MODES = frozenset({AppMode.ADVANCED_CHAT, AppMode.CHAT, AppMode.COMPLETION})


class ChatResult(BaseModel):
    """The answer to a chat message (blocking mode)."""

    model_config = ConfigDict(frozen=True)

    workflow_run_id: str
    conversation_id: str
    message_id: str | None
    answer: str
    status: str
    error: str | None = None
    usage: dict[str, Any] = Field(default_factory=dict)


class ChatService:
    """Sends chat messages and completions to a tenant's apps and records their answers."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def start(
        self,
        tenant_id: str,
        app_id: str,
        *,
        user: str,
        query: str,
        inputs: Mapping[str, Any],
        conversation_id: str | None = None,
    ) -> StartedRun:
        """Create (or continue) the user's conversation and enqueue the run answering ``query``."""
        return self._start(
            tenant_id, app_id, CHAT_MODES, user=user, query=query, inputs=inputs,
            conversation_id=conversation_id,
        )  # fmt: skip

    def complete(
        self, tenant_id: str, app_id: str, *, user: str, query: str, inputs: Mapping[str, Any]
    ) -> StartedRun:
        """Enqueue the run of a completion app; its answer is recorded as a message of a
        conversation of its own (as Dify records completions)."""
        return self._start(
            tenant_id, app_id, frozenset({AppMode.COMPLETION}), user=user, query=query,
            inputs=inputs, conversation_id=None,
        )  # fmt: skip

    def _start(
        self,
        tenant_id: str,
        app_id: str,
        modes: frozenset[AppMode],
        *,
        user: str,
        query: str,
        inputs: Mapping[str, Any],
        conversation_id: str | None,
    ) -> StartedRun:
        owner = end_user_id(tenant_id, user)
        runs = WorkflowRunService(self.runtime)
        # Checks read only; admission and the owner (Redis) come before the write transaction.
        with self.runtime.db.session() as session:
            app = require_app(session, tenant_id, app_id)
            if app.mode not in modes:
                hint = {
                    AppMode.WORKFLOW: "; use /v1/workflows/run",
                    AppMode.COMPLETION: "; use /v1/completion-messages",
                }.get(AppMode(app.mode), "")
                raise WrongAppMode(
                    f"a {app.mode} app does not take "
                    + ("completion" if AppMode.COMPLETION in modes else "chat")
                    + f" messages{hint}",
                    details={"mode": app.mode},
                )
            if app.mode in MODEL_CONFIG_MODES:
                # Empty form fields take the defaults the model config declares.
                inputs = with_defaults(app.model_config or {}, inputs)
            if conversation_id is not None:
                found = session.scalar(
                    select(Conversation.id).where(
                        Conversation.tenant_id == tenant_id,
                        Conversation.app_id == app_id,
                        Conversation.id == conversation_id,
                        Conversation.from_end_user_id == owner,
                    )
                )
                if found is None:
                    raise NotFound("conversation not found")
            prepared = runs.prepare_run(session, app, inputs)
        with runs.admitted(prepared, user) as slot, self.runtime.db.transaction() as session:
            if conversation_id is None:
                conversation_id = new_id()
                session.add(
                    Conversation(
                        id=conversation_id,
                        tenant_id=tenant_id,
                        app_id=app_id,
                        from_end_user_id=owner,
                        name=query.strip()[:CONVERSATION_NAME_LENGTH],
                        status=ConversationStatus.NORMAL,
                        inputs=dict(inputs),
                    )
                )
                session.flush()
            # The message's id is known from the start, so that every event of its stream
            # can name it; the run records the answer under it.
            return runs.create_run(
                session, slot, inputs=inputs, query=query, conversation_id=conversation_id,
                message_id=new_id(),
            )  # fmt: skip

    def history(
        self, tenant_id: str, conversation_id: str, limit: int = HISTORY_MESSAGES
    ) -> list[ChatMessage]:
        """The conversation's last answered turns, oldest first, as chat memory."""
        with self.runtime.db.session() as session:
            rows = list(
                session.scalars(
                    select(Message)
                    .where(
                        Message.tenant_id == tenant_id,
                        Message.conversation_id == conversation_id,
                        Message.status == MessageStatus.NORMAL,
                    )
                    .order_by(Message.created_at.desc(), Message.id.desc())
                    .limit(limit)
                )
            )
        turns: list[ChatMessage] = []
        for row in reversed(rows):
            turns += [ChatMessage("user", row.query), ChatMessage("assistant", row.answer)]
        return turns

    def record_answer(
        self,
        tenant_id: str,
        app_id: str,
        *,
        conversation_id: str,
        run_id: str,
        query: str,
        answer: str,
        message_tokens: int,
        answer_tokens: int,
        provider: str,
        message_id: str | None = None,
    ) -> MessageView:
        """Record the answer (``message_was_created``: quota spent, or ``QuotaExceeded``)."""
        view = MessageService(self.runtime).create(
            tenant_id,
            app_id,
            query=query,
            answer=answer,
            message_tokens=message_tokens,
            answer_tokens=answer_tokens,
            conversation_id=conversation_id,
            provider=provider,
            message_id=message_id,
        )
        with self.runtime.db.transaction() as session:
            session.execute(
                update(Message)
                .where(Message.tenant_id == tenant_id, Message.id == view.id)
                .values(workflow_run_id=run_id)
            )
        return view

    def wait(self, tenant_id: str, started: StartedRun, user: str) -> ChatResult:
        """Block until the run answering a message ends."""
        result, final = WorkflowRunService(self.runtime).wait(tenant_id, started.run_id, user)
        return chat_result(started, result.status, result.error, final)


def chat_result(
    started: StartedRun, status: str, error: str | None, final: AppQueueEvent
) -> ChatResult:
    """The blocking answer from the run's last event."""
    conversation_id = started.conversation_id or ""
    if isinstance(final, MessageEndEvent):
        return ChatResult(
            workflow_run_id=started.run_id,
            conversation_id=final.conversation_id,
            message_id=final.message_id,
            answer=final.answer,
            status=status,
            usage=final.usage,
        )
    message = getattr(final, "message", None) or getattr(final, "error", None) or error
    return ChatResult(
        workflow_run_id=started.run_id,
        conversation_id=conversation_id,
        message_id=None,
        answer="",
        status=status,
        error=message,
    )
