"""Dead letters: tasks that failed for good, kept with everything needed to replay them.

System-owned like task records: ``tenant_id`` is nullable and has no foreign key.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from relay.models.base import Base, IdMixin, UTCDateTime, utcnow


class DeadLetterReason(StrEnum):
    """Why a task was given up on."""

    FATAL = "fatal"  # an error the retry policy says retrying cannot fix
    EXHAUSTED = "exhausted"  # retryable, but out of attempts
    TIME_LIMIT = "time_limit"  # killed by its hard time limit
    WORKER_LOST = "worker_lost"  # its deliveries died with their worker as often as it may run
    UNPUBLISHABLE = "unpublishable"  # the outbox could not publish it (attempts or age)
    REJECTED = "rejected"  # the worker could not run the message (unknown task, bad arguments)


class DeadLetter(IdMixin, Base):
    """A task that failed for good. Replaying it sends a new task and records which one."""

    __tablename__ = "dead_letters"

    task_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    task_name: Mapped[str] = mapped_column(String(255), nullable=False)
    queue: Mapped[str] = mapped_column(String(128), nullable=False)
    tenant_id: Mapped[str | None] = mapped_column(String(36), index=True)
    args: Mapped[list[Any]] = mapped_column(JSON, nullable=False, default=list)
    kwargs: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    headers: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    reason: Mapped[str] = mapped_column(String(32), nullable=False)
    error: Mapped[str] = mapped_column(Text, nullable=False, default="")
    traceback: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=utcnow, index=True
    )
    replayed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    replayed_task_id: Mapped[str | None] = mapped_column(String(64))
    # The dead letter this one's task was a replay of; kept (as NULL) when that one is purged.
    replay_of: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("dead_letters.id", ondelete="SET NULL")
    )

    @property
    def replayed(self) -> bool:
        """True once a replay has been sent."""
        return self.replayed_at is not None

    def __repr__(self) -> str:
        return f"<DeadLetter {self.id} {self.task_name} {self.reason}>"
