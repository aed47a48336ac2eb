"""The transactional outbox: tasks enqueued inside a DB transaction, published after commit.

System-owned: ``tenant_id`` is nullable and has no foreign key, because a row is often written in
the very transaction that deletes its tenant (the clean-up task of that tenant).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from relay.models.base import Base, IdMixin, UTCDateTime, utcnow


class OutboxStatus(StrEnum):
    """Whether a row has been handed to the broker."""

    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"  # given up on after its attempts or its age: a dead letter holds it


class OutboxMessage(IdMixin, Base):
    """A task to publish. The idempotency key travels with the task so its effect applies once."""

    __tablename__ = "outbox_messages"
    # The relay scans "pending, oldest first"; this index serves it and any lookup by status.
    __table_args__ = (Index(None, "status", "created_at"),)

    tenant_id: Mapped[str | None] = mapped_column(String(36), index=True)
    task_name: Mapped[str] = mapped_column(String(255), nullable=False)
    queue: Mapped[str] = mapped_column(String(128), nullable=False)
    args: Mapped[list[Any]] = mapped_column(JSON, nullable=False, default=list)
    kwargs: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    headers: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    idempotency_key: Mapped[str] = mapped_column(String(128), nullable=False, unique=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=OutboxStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)

    def __repr__(self) -> str:
        return f"<OutboxMessage {self.id} {self.task_name} {self.status}>"
