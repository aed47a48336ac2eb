"""Import and export of Dify app exports (the DSL), scoped by tenant.

Import reads the export, checks its graph as saving a draft would, and creates the app with
its draft (and publishes it on request) in one transaction, emitting the same events as the
step-by-step API. Its report says what was mapped and what needs attention (datasets unknown to
the tenant, tool credentials that live in Dify, plugins, which LLM provider runs the models). An
export that cannot run (an unsupported node type, a cycle) is refused with that report and
creates nothing. Export writes the same shape back, so import -> export -> import keeps the graph.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from relay.errors import BadRequest, NotFound
from relay.events import signals
from relay.events.payloads import (
    AppCreated,
    AppDraftWorkflowSynced,
    AppModelConfigUpdated,
    AppPublishedWorkflowUpdated,
)
from relay.models import App, AppStatus, Dataset, Tenant, new_id
from relay.runtime import Runtime
from relay.services.app_service import AppDetail, NoDraft, app_detail, require_app
from relay.services.workflow_check import declared_names, graph_problems
from relay.workflow.dsl_document import (
    AppDocument,
    attention,
    mapped_summary,
    read_document,
    review,
    write_document,
)
from relay.workflow.nodes.registry import default_registry


class InvalidDsl(BadRequest):
    """The export cannot become a runnable app; ``details`` is the import report."""

    code = "invalid_dsl"


class AttentionItem(BaseModel):
    """Something to check or fix after the import (``code`` is machine-readable)."""

    model_config = ConfigDict(extra="allow")

    code: str = Field(
        description="unknown_dataset, missing_tool_credentials, unsupported_node_type, "
        "invalid_graph, llm_provider or plugin_dependency"
    )
    node_id: str | None
    field: str | None
    message: str


class ImportReport(BaseModel):
    """The imported app, what was mapped and what needs attention."""

    model_config = ConfigDict(serialize_by_alias=True)

    status: Literal["completed", "completed-with-warnings"]
    app: AppDetail
    published: bool
    mapped: dict[str, Any] = Field(
        description="Node types, edges, variables and features taken over"
    )
    attention: list[AttentionItem]


# Items that are information, not a problem: the import still "completed".
_INFORMATIONAL = frozenset({"llm_provider"})


class AppDslService:
    """Import and export apps in Dify's DSL."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def import_app(
        self,
        tenant_id: str,
        source: str | bytes | Mapping[str, Any],
        *,
        as_json: bool = False,
        publish: bool = False,
        name: str | None = None,
    ) -> ImportReport:
        """Create an app from an export; ``InvalidDsl`` (400, nothing created) when it cannot
        run, ``DSLError`` (400) when it is not an export at all."""
        doc = read_document(source, as_json=as_json)
        if name:
            doc = dataclasses.replace(doc, name=name.strip()[:255])
        mapped = mapped_summary(doc)
        with self.runtime.db.transaction() as session:
            if session.get(Tenant, tenant_id) is None:
                raise NotFound(f"no tenant {tenant_id}")
            wanted = _dataset_ids(doc)
            known = set(
                session.scalars(
                    select(Dataset.id).where(Dataset.tenant_id == tenant_id, Dataset.id.in_(wanted))
                )
            ) if wanted else set()  # fmt: skip
            items = review(
                doc, known_datasets=known, llm_provider=self.runtime.settings.workflow.llm_provider
            )
            blocking = _graph_items(doc, vision=self.runtime.settings.workflow.llm_vision)
            if blocking:
                raise InvalidDsl(
                    f"the export cannot run in relay: {blocking[0]['message']}"
                    + (f" (and {len(blocking) - 1} more)" if len(blocking) > 1 else ""),
                    details={"mapped": mapped, "attention": blocking + items},
                )
            row = self._create(session, tenant_id, doc, publish=publish)
            session.flush()
            detail = app_detail(row)
        warnings = [item for item in items if item["code"] not in _INFORMATIONAL]
        return ImportReport(
            status="completed-with-warnings" if warnings else "completed",
            app=detail,
            published=publish and doc.has_workflow,
            mapped=mapped,
            attention=[AttentionItem(**item) for item in items],
        )

    def export_app(
        self, tenant_id: str, app_id: str, *, version: Literal["draft", "published"] = "draft"
    ) -> dict[str, Any]:
        """The app as a Dify export (its draft workflow, or the published one)."""
        with self.runtime.db.transaction() as session:
            row = require_app(session, tenant_id, app_id)
            graph = row.draft_workflow if version == "draft" else row.published_workflow
            if row.mode in ("workflow", "advanced-chat") and graph is None:
                raise NoDraft(f"the app has no {version} workflow to export")
            doc = AppDocument(
                name=row.name,
                mode=row.mode,
                version="",
                description=row.description or "",
                graph=copy.deepcopy(graph),
                features=dict(row.workflow_features or {}),
                environment_variables=list(row.environment_variables or []),
                conversation_variables=list(row.conversation_variables or []),
                model_config=copy.deepcopy(row.model_config),
            )
        return write_document(doc)

    def _create(self, session: Any, tenant_id: str, doc: AppDocument, *, publish: bool) -> App:
        bus = self.runtime.bus
        row = App(
            id=new_id(),
            tenant_id=tenant_id,
            name=doc.name,
            mode=doc.mode,
            description=doc.description,
            model_config=copy.deepcopy(doc.model_config),
            draft_workflow=copy.deepcopy(doc.graph),
            workflow_features=dict(doc.features) if doc.has_workflow else None,
            environment_variables=list(doc.environment_variables) if doc.has_workflow else None,
            conversation_variables=list(doc.conversation_variables) if doc.has_workflow else None,
            status=AppStatus.NORMAL,
        )
        session.add(row)
        session.flush()
        scoped = {"tenant_id": tenant_id, "app_id": row.id}
        bus.emit(
            signals.app_was_created,
            AppCreated(**scoped, mode=row.mode, name=row.name),
            session,
        )
        if doc.model_config is not None:
            bus.emit(
                signals.app_model_config_was_updated,
                AppModelConfigUpdated(**scoped, model_config=copy.deepcopy(doc.model_config)),
                session,
            )
        if doc.graph is not None:
            bus.emit(
                signals.app_draft_workflow_was_synced, AppDraftWorkflowSynced(**scoped), session
            )
            if publish:
                row.published_workflow = copy.deepcopy(doc.graph)
                session.flush()
                bus.emit(
                    signals.app_published_workflow_was_updated,
                    AppPublishedWorkflowUpdated(**scoped, graph=copy.deepcopy(doc.graph)),
                    session,
                )
        return row


def _dataset_ids(doc: AppDocument) -> list[str]:
    found: list[str] = []
    for raw in (doc.graph or {}).get("nodes") or []:
        data = raw.get("data") if isinstance(raw, Mapping) else None
        if isinstance(data, Mapping) and data.get("type") == "knowledge-retrieval":
            found += [str(i) for i in data.get("dataset_ids") or []]
    configs = ((doc.model_config or {}).get("dataset_configs") or {}).get("datasets") or {}
    for entry in configs.get("datasets") or [] if isinstance(configs, Mapping) else []:
        dataset = entry.get("dataset") if isinstance(entry, Mapping) else None
        if isinstance(dataset, Mapping) and dataset.get("id"):
            found.append(str(dataset["id"]))
    return found


def _graph_items(doc: AppDocument, *, vision: bool = True) -> list[dict[str, Any]]:
    """The graph's problems as attention items (unsupported node types named as such)."""
    if doc.graph is None:
        return []
    problems = graph_problems(
        doc.graph,
        vision_supported=vision,
        environment_names=declared_names(doc.environment_variables),
        conversation_names=declared_names(doc.conversation_variables),
    )
    supported = set(default_registry().supported_types())
    types = {
        str(raw.get("id")): str((raw.get("data") or {}).get("type") or "")
        for raw in doc.graph.get("nodes") or []
        if isinstance(raw, Mapping)
    }
    items = []
    for problem in problems:
        node_type = types.get(str(problem.get("node_id")), "")
        unsupported = problem.get("field") == "type" and node_type and node_type not in supported
        items.append(
            attention(
                "unsupported_node_type" if unsupported else "invalid_graph",
                str(problem["message"]),
                node_id=problem.get("node_id"),
                field=problem.get("field"),
                **({"node_type": node_type} if unsupported else {}),
            )
        )
    return items
