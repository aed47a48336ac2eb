"""What apps' own Service API keeps: app API keys, message feedback and uploaded files.

An app API key (``app-...``) reaches one app of one tenant; like tenant keys, only its SHA-256
hex digest is stored. Feedback is one rating per message and end user. An uploaded file keeps its
bytes in the database (uploads are small; the size is capped at the API) until a run reads it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from relay.models.base import Base, IdMixin, TenantOwned, TimestampMixin, UTCDateTime, utcnow
from relay.models.tenant import tenant_fk


class AppApiKey(IdMixin, TenantOwned, Base):
    """A key that authenticates calls to one app's Service API."""

    __tablename__ = "app_api_keys"

    tenant_id: Mapped[str] = tenant_fk()
    app_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("apps.id", ondelete="CASCADE"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    key_prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    def __repr__(self) -> str:
        return f"<AppApiKey {self.id} {self.key_prefix}... app={self.app_id}>"


class MessageFeedback(IdMixin, TimestampMixin, TenantOwned, Base):
    """An end user's rating of a message (``like`` or ``dislike``) with an optional comment."""

    __tablename__ = "message_feedbacks"
    __table_args__ = (UniqueConstraint("message_id", "from_end_user_id"),)

    tenant_id: Mapped[str] = tenant_fk()
    app_id: Mapped[str] = mapped_column(String(36), nullable=False, index=True)
    conversation_id: Mapped[str] = mapped_column(String(36), nullable=False)
    message_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("messages.id", ondelete="CASCADE"), nullable=False, index=True
    )
    rating: Mapped[str] = mapped_column(String(16), nullable=False)
    content: Mapped[str | None] = mapped_column(Text)
    from_end_user_id: Mapped[str] = mapped_column(String(36), nullable=False)


class UploadFile(IdMixin, TenantOwned, Base):
    """A file an end user uploaded to an app, to pass as a ``files`` input of a run."""

    __tablename__ = "upload_files"

    tenant_id: Mapped[str] = tenant_fk()
    app_id: Mapped[str] = mapped_column(String(36), nullable=False, index=True)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    size: Mapped[int] = mapped_column(Integer, nullable=False)
    extension: Mapped[str] = mapped_column(String(32), nullable=False, default="")
    mime_type: Mapped[str] = mapped_column(String(255), nullable=False)
    content: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_by: Mapped[str] = mapped_column(String(36), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
