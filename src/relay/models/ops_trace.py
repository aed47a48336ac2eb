"""The ops trace aggregate: trace payloads an app emits for an observability provider.

Each row is written by the ``relay.ops_trace.deliver`` task before it POSTs the payload, so a
trace is never lost to a provider outage: the row keeps the payload, the delivery status, the
number of attempts and the last error. ``app_id`` has no foreign key, like the rest of an app's
history, because app deletion removes these rows in batches in the background.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from relay.models.base import Base, IdMixin, TenantOwned, UTCDateTime, utcnow
from relay.models.tenant import tenant_fk


class OpsTraceStatus(StrEnum):
    """Delivery state of one trace.

    ``pending``: stored, not delivered (yet; with no endpoint configured it stays so).
    ``delivered``: the endpoint accepted it. ``failed``: the latest attempt failed (a retry may
    still deliver it; the task record says whether it was the last).
    """

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class OpsTrace(IdMixin, TenantOwned, Base):
    """One trace payload of an app and its delivery to the configured endpoint."""

    __tablename__ = "ops_traces"

    tenant_id: Mapped[str] = tenant_fk()
    app_id: Mapped[str] = mapped_column(String(36), nullable=False, index=True)
    trace_type: Mapped[str] = mapped_column(String(64), nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=OpsTraceStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    def __repr__(self) -> str:
        return f"<OpsTrace {self.id} app={self.app_id} {self.trace_type} {self.status}>"
