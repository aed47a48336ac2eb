"""Processed idempotency keys: the set of task effects that have already been applied.

A task with an idempotency key inserts its key here in the same transaction as its effect; a
duplicate delivery then hits the primary key and skips the effect.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from relay.models.base import Base, UTCDateTime, utcnow


class ProcessedKey(Base):
    """One idempotency key whose effect has been applied."""

    __tablename__ = "processed_keys"

    idempotency_key: Mapped[str] = mapped_column(String(128), primary_key=True)
    task_name: Mapped[str] = mapped_column(String(255), nullable=False)
    processed_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=utcnow, index=True
    )

    def __repr__(self) -> str:
        return f"<ProcessedKey {self.idempotency_key} {self.task_name}>"
