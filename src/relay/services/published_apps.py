"""Workflow-as-tool's look-up: a tenant's published workflow apps, from SQL."""

from __future__ import annotations

from sqlalchemy import select

from relay.adapters.sql import Database
from relay.models.app import App
from relay.services.workflow_check import declared_values
from relay.workflow import WorkflowApp, graph_from_dict

WORKFLOW_MODE = "workflow"


class SqlPublishedApps:
    """``PublishedApps``: the tool's provider id names an app id, else its tool name the app's
    name; only published workflow apps of the calling tenant are found."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def find(self, tenant_id: str, provider_id: str, tool_name: str) -> WorkflowApp | None:
        """The published app, or None (another tenant's app is never found)."""
        scoped = select(App).where(
            App.tenant_id == tenant_id,
            App.mode == WORKFLOW_MODE,
            App.published_workflow.is_not(None),
        )
        with self.db.session() as session:
            row = session.scalars(scoped.where(App.id == provider_id)).first()
            if row is None and tool_name:
                row = session.scalars(scoped.where(App.name == tool_name).limit(1)).first()
            if row is None or row.published_workflow is None:
                return None
            graph = row.published_workflow
            return WorkflowApp(
                name=row.name,
                mode=row.mode,
                graph=graph_from_dict(graph),
                environment_variables=declared_values(row.environment_variables),
                graph_dict=dict(graph),
            )
