"""The conversation aggregate: chat conversations and their messages."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from relay.models.base import Base, IdMixin, TenantOwned, TimestampMixin, UTCDateTime, utcnow
from relay.models.tenant import tenant_fk


class ConversationStatus(StrEnum):
    """Lifecycle of a conversation."""

    NORMAL = "normal"
    ARCHIVED = "archived"


class MessageStatus(StrEnum):
    """Outcome of one message (as in Dify: ``normal`` or ``error``)."""

    NORMAL = "normal"
    ERROR = "error"


class Conversation(IdMixin, TimestampMixin, TenantOwned, Base):
    """A chat session with an app, started by an end user or by an account (debugging)."""

    __tablename__ = "conversations"

    tenant_id: Mapped[str] = tenant_fk()
    app_id: Mapped[str] = mapped_column(String(36), nullable=False, index=True)
    from_end_user_id: Mapped[str | None] = mapped_column(String(36))
    from_account_id: Mapped[str | None] = mapped_column(String(36))
    name: Mapped[str] = mapped_column(String(255), nullable=False, default="")
    status: Mapped[str] = mapped_column(
        String(32), nullable=False, default=ConversationStatus.NORMAL
    )
    # The inputs of the conversation's first message (Dify keeps them on the conversation).
    inputs: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))

    def __repr__(self) -> str:
        return f"<Conversation {self.id} app={self.app_id}>"


class Message(IdMixin, TenantOwned, Base):
    """One query and its answer, with token usage and price."""

    __tablename__ = "messages"

    tenant_id: Mapped[str] = tenant_fk()
    app_id: Mapped[str] = mapped_column(String(36), nullable=False, index=True)
    conversation_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False, index=True
    )
    query: Mapped[str] = mapped_column(Text, nullable=False)
    answer: Mapped[str] = mapped_column(Text, nullable=False, default="")
    message_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    answer_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    total_price: Mapped[Decimal | None] = mapped_column(Numeric(10, 7))
    status: Mapped[str] = mapped_column(String(32), nullable=False, default=MessageStatus.NORMAL)
    error: Mapped[str | None] = mapped_column(Text)
    workflow_run_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=utcnow, index=True
    )
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=utcnow, onupdate=utcnow
    )

    def __repr__(self) -> str:
        return f"<Message {self.id} conversation={self.conversation_id} {self.status}>"
