"""Messages of an app's conversations: record an answered query, list the history.

Recording a message emits ``message_was_created``. Its quota receiver is critical: when the
tenant is over quota it raises ``QuotaExceeded``, the transaction rolls back and nothing (not
even a new conversation) is stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.orm import Session

from relay.errors import NotFound
from relay.events import signals
from relay.events.payloads import MessageCreated
from relay.models import (
    Conversation,
    ConversationStatus,
    Message,
    MessageStatus,
    new_id,
)
from relay.runtime import Runtime
from relay.services.app_service import require_app
from relay.services.pagination import Page, PageParams, paginate

DEFAULT_PROVIDER = "openai"
CONVERSATION_NAME_LENGTH = 40


class MessageView(BaseModel):
    """A message as the API shows it."""

    model_config = ConfigDict(frozen=True)

    id: str
    app_id: str
    conversation_id: str
    query: str
    answer: str
    message_tokens: int
    answer_tokens: int
    total_tokens: int
    status: str
    error: str | None
    created_at: datetime


class MessagePage(Page[MessageView]):
    """A page of messages."""


def _view(row: Message) -> MessageView:
    return MessageView(
        id=row.id,
        app_id=row.app_id,
        conversation_id=row.conversation_id,
        query=row.query,
        answer=row.answer,
        message_tokens=row.message_tokens,
        answer_tokens=row.answer_tokens,
        total_tokens=row.message_tokens + row.answer_tokens,
        status=row.status,
        error=row.error,
        created_at=row.created_at,
    )


def _views(rows: Sequence[Message]) -> list[MessageView]:
    return [_view(row) for row in rows]


def _require_conversation(
    session: Session, tenant_id: str, app_id: str, conversation_id: str
) -> Conversation:
    row = session.scalar(
        select(Conversation).where(
            Conversation.tenant_id == tenant_id,
            Conversation.app_id == app_id,
            Conversation.id == conversation_id,
        )
    )
    if row is None:
        raise NotFound("conversation not found")
    return row


class MessageService:
    """Records and lists the messages of a tenant's apps."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def create(
        self,
        tenant_id: str,
        app_id: str,
        *,
        query: str,
        answer: str,
        message_tokens: int,
        answer_tokens: int,
        conversation_id: str | None = None,
        provider: str = DEFAULT_PROVIDER,
        message_id: str | None = None,
    ) -> MessageView:
        """Record a message (starting a conversation when none is given); emits
        ``message_was_created``. ``QuotaExceeded`` from the quota receiver stores nothing."""
        with self.runtime.db.transaction() as session:
            require_app(session, tenant_id, app_id)
            if conversation_id is None:
                conversation = Conversation(
                    id=new_id(),
                    tenant_id=tenant_id,
                    app_id=app_id,
                    name=query.strip()[:CONVERSATION_NAME_LENGTH],
                    status=ConversationStatus.NORMAL,
                )
                session.add(conversation)
            else:
                conversation = _require_conversation(session, tenant_id, app_id, conversation_id)
            row = Message(
                id=message_id or new_id(),
                tenant_id=tenant_id,
                app_id=app_id,
                conversation_id=conversation.id,
                query=query,
                answer=answer,
                message_tokens=message_tokens,
                answer_tokens=answer_tokens,
                status=MessageStatus.NORMAL,
            )
            session.add(row)
            session.flush()
            self.runtime.bus.emit(
                signals.message_was_created,
                MessageCreated(
                    tenant_id=tenant_id,
                    app_id=app_id,
                    conversation_id=conversation.id,
                    message_id=row.id,
                    provider=provider,
                    total_tokens=message_tokens + answer_tokens,
                ),
                session,
            )
            return _view(row)

    def list_messages(
        self,
        tenant_id: str,
        app_id: str,
        page: PageParams,
        conversation_id: str | None = None,
    ) -> MessagePage:
        """The app's messages (of one conversation, if given), newest first."""
        with self.runtime.db.session() as session:
            require_app(session, tenant_id, app_id)
            query = select(Message).where(Message.tenant_id == tenant_id, Message.app_id == app_id)
            if conversation_id is not None:
                _require_conversation(session, tenant_id, app_id, conversation_id)
                query = query.where(Message.conversation_id == conversation_id)
            query = query.order_by(Message.created_at.desc(), Message.id.desc())
            return paginate(session, query, page, _views, MessagePage)
