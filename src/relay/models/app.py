"""The app aggregate: apps, their installations, public sites and attached datasets.

Conversations, messages and workflow runs reference ``app_id`` without a foreign key on purpose:
as in Dify, deleting an app removes that (potentially large) history in a background task, in
batches, rather than in one cascading delete inside the request.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from relay.models.base import Base, IdMixin, TenantOwned, TimestampMixin
from relay.models.tenant import tenant_fk


class AppMode(StrEnum):
    """What kind of app this is (Dify's app modes)."""

    WORKFLOW = "workflow"
    ADVANCED_CHAT = "advanced-chat"
    CHAT = "chat"
    COMPLETION = "completion"
    AGENT_CHAT = "agent-chat"


class AppStatus(StrEnum):
    """Lifecycle of an app."""

    NORMAL = "normal"
    ARCHIVED = "archived"


class App(IdMixin, TimestampMixin, TenantOwned, Base):
    """An AI app. Workflow apps keep a draft graph and the published one (Dify DSL, as JSON)."""

    __tablename__ = "apps"

    tenant_id: Mapped[str] = tenant_fk()
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    mode: Mapped[str] = mapped_column(String(32), nullable=False)
    model_config: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    draft_workflow: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    published_workflow: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    status: Mapped[str] = mapped_column(String(32), nullable=False, default=AppStatus.NORMAL)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="", server_default="")
    # What a Dify export carries next to the graph, kept for export: the workflow's features
    # and its declared environment and conversation variables (Dify's list form).
    workflow_features: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    environment_variables: Mapped[list[Any] | None] = mapped_column(JSON(none_as_null=True))
    conversation_variables: Mapped[list[Any] | None] = mapped_column(JSON(none_as_null=True))

    def __repr__(self) -> str:
        return f"<App {self.id} {self.name!r} mode={self.mode}>"


class InstalledApp(IdMixin, TenantOwned, Base):
    """An app installed into a tenant's explore list (once per tenant)."""

    __tablename__ = "installed_apps"
    __table_args__ = (UniqueConstraint("tenant_id", "app_id"),)

    tenant_id: Mapped[str] = tenant_fk()
    app_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("apps.id", ondelete="CASCADE"), nullable=False, index=True
    )


class Site(IdMixin, TenantOwned, Base):
    """The public web page of an app, reached by its short ``code``."""

    __tablename__ = "sites"

    tenant_id: Mapped[str] = tenant_fk()
    app_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("apps.id", ondelete="CASCADE"), nullable=False, unique=True
    )
    code: Mapped[str] = mapped_column(String(16), nullable=False, unique=True)
    title: Mapped[str] = mapped_column(String(255), nullable=False)


class AppDatasetJoin(IdMixin, TenantOwned, Base):
    """A dataset an app retrieves from.

    No foreign keys to apps or datasets: the deletion handlers of either side remove the join.
    """

    __tablename__ = "app_dataset_joins"
    __table_args__ = (UniqueConstraint("app_id", "dataset_id"),)

    tenant_id: Mapped[str] = tenant_fk()
    app_id: Mapped[str] = mapped_column(String(36), nullable=False)
    dataset_id: Mapped[str] = mapped_column(String(36), nullable=False, index=True)
