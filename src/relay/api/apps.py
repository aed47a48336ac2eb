"""Apps of the calling tenant: create, read, configure, sync and publish the workflow, delete;
import and export Dify exports (the DSL)."""

from __future__ import annotations

from typing import Any, Literal

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, ConfigDict, Field

from relay.api.auth import current_runtime, tenant_id
from relay.api.body import Name, no_content, parse_body, parse_query, respond
from relay.api.openapi import TENANT, documented
from relay.errors import BadRequest
from relay.services.app_dsl_service import AppDslService, ImportReport
from relay.services.app_service import AppDetail, AppMode, AppPage, AppService
from relay.services.pagination import PageParams
from relay.workflow.dsl_document import dump_yaml

apps = Blueprint("apps", __name__)

_TAGS = ("apps",)


class AppCreate(BaseModel):
    """A new app."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True)

    name: Name
    mode: AppMode
    app_model_config: dict[str, Any] | None = Field(
        None, alias="model_config", description="Model provider, model and parameters"
    )


class ModelConfigUpdate(BaseModel):
    """An app's new model configuration (replaces the old one)."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True)

    app_model_config: dict[str, Any] = Field(alias="model_config")


class WorkflowGraph(BaseModel):
    """A workflow graph in Dify's shape: nodes and the edges between them."""

    model_config = ConfigDict(extra="allow")

    nodes: list[dict[str, Any]]
    edges: list[dict[str, Any]]


class DraftWorkflowSync(BaseModel):
    """The draft workflow to save."""

    model_config = ConfigDict(extra="forbid")

    graph: WorkflowGraph


class _NoBody(BaseModel):
    """Publishing takes no input; an empty body or ``{}``."""

    model_config = ConfigDict(extra="forbid")


def _service() -> AppService:
    return AppService(current_runtime())


@apps.post("/apps")
@documented(tags=_TAGS, security=TENANT, json=AppCreate, ok=(201, AppDetail))
def create_app() -> tuple[Response, int]:
    """Create an app."""
    body = parse_body(AppCreate)
    created = _service().create(
        tenant_id(), name=body.name, mode=body.mode, model_config=body.app_model_config
    )
    return respond(created, 201)


@apps.get("/apps")
@documented(tags=_TAGS, security=TENANT, query=PageParams, ok=(200, AppPage))
def list_apps() -> tuple[Response, int]:
    """List the tenant's apps, newest first."""
    return respond(_service().list_apps(tenant_id(), parse_query(PageParams)))


@apps.get("/apps/<app_id>")
@documented(tags=_TAGS, security=TENANT, ok=(200, AppDetail), errors=(404,))
def get_app(app_id: str) -> tuple[Response, int]:
    """One app with its model configuration and workflows."""
    return respond(_service().get(tenant_id(), app_id))


@apps.put("/apps/<app_id>/model-config")
@documented(tags=_TAGS, security=TENANT, json=ModelConfigUpdate, ok=(200, AppDetail), errors=(404,))
def update_model_config(app_id: str) -> tuple[Response, int]:
    """Replace the app's model configuration."""
    body = parse_body(ModelConfigUpdate)
    return respond(_service().update_model_config(tenant_id(), app_id, body.app_model_config))


@apps.put("/apps/<app_id>/workflows/draft")
@documented(
    tags=_TAGS, security=TENANT, json=DraftWorkflowSync, ok=(200, AppDetail), errors=(404, 409)
)
def sync_draft_workflow(app_id: str) -> tuple[Response, int]:
    """Save the draft workflow (workflow and advanced-chat apps)."""
    body = parse_body(DraftWorkflowSync)
    graph = body.graph.model_dump(mode="json")
    return respond(_service().sync_draft_workflow(tenant_id(), app_id, graph))


@apps.post("/apps/<app_id>/workflows/publish")
@documented(tags=_TAGS, security=TENANT, ok=(200, AppDetail), errors=(404, 409))
def publish_workflow(app_id: str) -> tuple[Response, int]:
    """Publish the draft workflow; 409 ``no_draft`` when none was saved."""
    parse_body(_NoBody)
    return respond(_service().publish_workflow(tenant_id(), app_id))


@apps.delete("/apps/<app_id>")
@documented(tags=_TAGS, security=TENANT, ok=(204, None), errors=(404,))
def delete_app(app_id: str) -> tuple[Response, int]:
    """Delete the app; its conversations and runs are removed in the background."""
    _service().delete(tenant_id(), app_id)
    return no_content()


# --- Dify DSL import and export -------------------------------------------------------------

_YAML_TYPES = ("application/x-yaml", "application/yaml", "text/yaml", "text/x-yaml", "text/plain")


class ImportQuery(BaseModel):
    """How to import."""

    model_config = ConfigDict(extra="forbid")

    publish: bool = Field(False, description="Publish the imported workflow at once")
    name: Name | None = Field(None, description="Name of the new app (default: the export's)")


class ExportQuery(BaseModel):
    """What to export."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["yaml", "json"] = Field("yaml", description="yaml (as Dify writes) or json")
    workflow: Literal["draft", "published"] = Field("draft", description="Which workflow")


@apps.post("/apps/import")
@documented(tags=_TAGS, security=TENANT, query=ImportQuery, ok=(201, ImportReport))
def import_app() -> tuple[Response, int]:
    """Create an app from a Dify export (YAML or JSON body, exactly as Dify writes it).

    Send YAML as ``application/x-yaml`` (or ``text/yaml``), JSON as ``application/json``. The
    answer reports what was mapped and what needs attention (unknown dataset ids, tool
    credentials, plugins); an export that cannot run is a 400 ``invalid_dsl`` with that report.
    """
    query = parse_query(ImportQuery)
    mimetype = request.mimetype or ""
    if mimetype == "application/json" or mimetype.endswith("+json"):
        as_json = True
    elif mimetype in _YAML_TYPES:
        as_json = False
    else:
        raise BadRequest(
            "send the export as application/x-yaml (or text/yaml) or application/json",
            details={"content_type": request.content_type},
        )
    report = AppDslService(current_runtime()).import_app(
        tenant_id(), request.get_data(), as_json=as_json, publish=query.publish, name=query.name
    )
    return respond(report, 201)


@apps.get("/apps/<app_id>/export")
@documented(tags=_TAGS, security=TENANT, query=ExportQuery, ok=(200, None), errors=(404, 409))
def export_app(app_id: str) -> Response | tuple[Response, int]:
    """The app as a Dify export: YAML (default, ``application/x-yaml``) or JSON."""
    query = parse_query(ExportQuery)
    document = AppDslService(current_runtime()).export_app(
        tenant_id(), app_id, version=query.workflow
    )
    if query.format == "json":
        return jsonify(document), 200
    response = Response(dump_yaml(document), mimetype="application/x-yaml")
    response.headers["Content-Disposition"] = f'attachment; filename="{app_id}.yml"'
    return response
