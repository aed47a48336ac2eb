"""Apps: create, configure, sync and publish their workflow, delete. Always scoped by tenant.

A workflow app keeps a draft graph (saved often, from the editor) and the published graph (what
runs). Publishing copies the draft. Deleting an app removes the app row with its installations,
site and dataset joins here; its (potentially large) conversation and run history is removed in
the background by the ``app_was_deleted`` handler, as in Dify.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from relay.errors import BadRequest, Conflict, NotFound
from relay.events import signals
from relay.events.payloads import (
    AppCreated,
    AppDeleted,
    AppDraftWorkflowSynced,
    AppModelConfigUpdated,
    AppPublishedWorkflowUpdated,
)
from relay.models import App, AppDatasetJoin, AppStatus, InstalledApp, Site, new_id
from relay.models import AppMode as AppMode  # re-exported: the API names the modes
from relay.runtime import Runtime
from relay.services.pagination import Page, PageParams, paginate
from relay.services.workflow_check import check_graph, declared_names
from relay.workflow.model_config import validate_model_config

WORKFLOW_MODES = frozenset({AppMode.WORKFLOW, AppMode.ADVANCED_CHAT})


class NoDraft(Conflict):
    """Publishing needs a saved draft workflow."""

    code = "no_draft"


class WorkflowNotSupported(Conflict):
    """Only workflow and advanced-chat apps have a workflow."""

    code = "workflow_not_supported"


class AppSummary(BaseModel):
    """An app as listed."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    mode: AppMode
    status: str
    has_draft_workflow: bool
    has_published_workflow: bool
    created_at: datetime
    updated_at: datetime


class AppDetail(AppSummary):
    """An app with its model configuration and workflow graphs."""

    model_config = ConfigDict(frozen=True, validate_by_name=True, serialize_by_alias=True)

    description: str = ""
    # ``model_config`` is reserved by pydantic; the field keeps the wire name through its alias.
    app_model_config: dict[str, Any] | None = Field(alias="model_config")
    draft_workflow: dict[str, Any] | None
    published_workflow: dict[str, Any] | None


class AppPage(Page[AppSummary]):
    """A page of apps."""


def _summary_fields(row: App) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "mode": AppMode(row.mode),
        "status": row.status,
        "has_draft_workflow": row.draft_workflow is not None,
        "has_published_workflow": row.published_workflow is not None,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def _summaries(rows: Sequence[App]) -> list[AppSummary]:
    return [AppSummary(**_summary_fields(row)) for row in rows]


def _detail(row: App) -> AppDetail:
    return AppDetail(
        **_summary_fields(row),
        description=row.description or "",
        app_model_config=row.model_config,
        draft_workflow=row.draft_workflow,
        published_workflow=row.published_workflow,
    )


def app_detail(row: App) -> AppDetail:
    """The API view of an app row."""
    return _detail(row)


def require_app(session: Session, tenant_id: str, app_id: str, *, lock: bool = False) -> App:
    """The tenant's app ``app_id``; ``NotFound`` for an unknown id and for another tenant's."""
    query = select(App).where(App.tenant_id == tenant_id, App.id == app_id)
    if lock:
        query = query.with_for_update()
    row = session.scalar(query)
    if row is None:
        raise NotFound("app not found")
    return row


class AppService:
    """Operations on a tenant's apps; each runs in one transaction and emits its event in it."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        # Whether the configured model takes images (llm nodes with vision are refused if not).
        self._vision = runtime.settings.workflow.llm_vision

    def create(
        self,
        tenant_id: str,
        *,
        name: str,
        mode: AppMode | str,
        model_config: Mapping[str, Any] | None = None,
    ) -> AppDetail:
        """Create an app; emits ``app_was_created`` (and ``app_model_config_was_updated`` when it
        comes with a model config, so the datasets it names are linked at once)."""
        try:
            app_mode = AppMode(mode)
        except ValueError:
            raise BadRequest(f"unknown app mode {mode!r}", details={"field": "mode"}) from None
        if model_config is not None:
            _check_model_config(app_mode, model_config)
        with self.runtime.db.transaction() as session:
            row = App(
                id=new_id(),
                tenant_id=tenant_id,
                name=name,
                mode=app_mode.value,
                model_config=dict(model_config) if model_config is not None else None,
                status=AppStatus.NORMAL,
            )
            session.add(row)
            session.flush()
            self.runtime.bus.emit(
                signals.app_was_created,
                AppCreated(tenant_id=tenant_id, app_id=row.id, mode=row.mode, name=row.name),
                session,
            )
            if model_config is not None:
                self.runtime.bus.emit(
                    signals.app_model_config_was_updated,
                    AppModelConfigUpdated(
                        tenant_id=tenant_id, app_id=row.id, model_config=dict(model_config)
                    ),
                    session,
                )
            return _detail(row)

    def list_apps(self, tenant_id: str, page: PageParams) -> AppPage:
        """The tenant's apps, newest first."""
        with self.runtime.db.session() as session:
            query = (
                select(App)
                .where(App.tenant_id == tenant_id)
                .order_by(App.created_at.desc(), App.id.desc())
            )
            return paginate(session, query, page, _summaries, AppPage)

    def get(self, tenant_id: str, app_id: str) -> AppDetail:
        """One of the tenant's apps."""
        with self.runtime.db.session() as session:
            return _detail(require_app(session, tenant_id, app_id))

    def update_model_config(
        self, tenant_id: str, app_id: str, model_config: Mapping[str, Any]
    ) -> AppDetail:
        """Replace the app's model configuration; emits ``app_model_config_was_updated``."""
        with self.runtime.db.transaction() as session:
            row = require_app(session, tenant_id, app_id, lock=True)
            _check_model_config(AppMode(row.mode), model_config)
            row.model_config = dict(model_config)
            session.flush()
            self.runtime.bus.emit(
                signals.app_model_config_was_updated,
                AppModelConfigUpdated(
                    tenant_id=tenant_id, app_id=app_id, model_config=copy.deepcopy(row.model_config)
                ),
                session,
            )
            return _detail(row)

    def sync_draft_workflow(
        self, tenant_id: str, app_id: str, graph: Mapping[str, Any]
    ) -> AppDetail:
        """Save the draft graph; emits ``app_draft_workflow_was_synced``.

        The graph is checked first: ``InvalidWorkflow`` (400) names each node and field that is
        wrong (unknown type, cycle, reference to a node that does not run before, bad data).
        """
        with self.runtime.db.transaction() as session:
            row = require_app(session, tenant_id, app_id, lock=True)
            _require_workflow_mode(row)
            _check(row, graph, "the draft workflow", self._vision)
            row.draft_workflow = dict(graph)
            session.flush()
            self.runtime.bus.emit(
                signals.app_draft_workflow_was_synced,
                AppDraftWorkflowSynced(tenant_id=tenant_id, app_id=app_id),
                session,
            )
            return _detail(row)

    def publish_workflow(self, tenant_id: str, app_id: str) -> AppDetail:
        """Publish the draft graph; emits ``app_published_workflow_was_updated`` with it.

        ``NoDraft`` (409) when no draft was saved yet.
        """
        with self.runtime.db.transaction() as session:
            row = require_app(session, tenant_id, app_id, lock=True)
            _require_workflow_mode(row)
            if row.draft_workflow is None:
                raise NoDraft("the app has no draft workflow to publish; save a draft first")
            # Re-checked: a draft saved before a node type was removed, or by an older relay.
            _check(row, row.draft_workflow, "the draft workflow to publish", self._vision)
            row.published_workflow = copy.deepcopy(row.draft_workflow)
            session.flush()
            self.runtime.bus.emit(
                signals.app_published_workflow_was_updated,
                AppPublishedWorkflowUpdated(
                    tenant_id=tenant_id, app_id=app_id, graph=copy.deepcopy(row.published_workflow)
                ),
                session,
            )
            return _detail(row)

    def delete(self, tenant_id: str, app_id: str) -> None:
        """Delete the app with its installations, site and dataset joins; emits
        ``app_was_deleted`` (whose handler removes conversations, messages and runs)."""
        with self.runtime.db.transaction() as session:
            require_app(session, tenant_id, app_id, lock=True)
            scoped = {"tenant_id": tenant_id, "app_id": app_id}
            for model in (AppDatasetJoin, InstalledApp, Site):
                session.execute(delete(model).filter_by(**scoped))
            session.execute(delete(App).where(App.tenant_id == tenant_id, App.id == app_id))
            self.runtime.bus.emit(
                signals.app_was_deleted, AppDeleted(tenant_id=tenant_id, app_id=app_id), session
            )


def _check(row: App, graph: Mapping[str, Any], what: str, vision: bool) -> None:
    check_graph(
        graph,
        what=what,
        vision_supported=vision,
        environment_names=declared_names(row.environment_variables),
        conversation_names=declared_names(row.conversation_variables),
    )


def _check_model_config(mode: AppMode, model_config: Mapping[str, Any]) -> None:
    """A completion or chat app's config: each Dify field present must be well formed (400
    ``invalid_model_config`` naming it); what a run needs is checked again when one starts."""
    if mode in (AppMode.COMPLETION, AppMode.CHAT):
        validate_model_config(model_config, complete=False)


def _require_workflow_mode(row: App) -> None:
    if row.mode not in WORKFLOW_MODES:
        raise WorkflowNotSupported(
            f"a {row.mode} app has no workflow; only workflow and advanced-chat apps do",
            details={"mode": row.mode},
        )
