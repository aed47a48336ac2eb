"""HTTP API: blueprints parse the request, call one service and serialise the answer.

``/v1/tenants...`` is tenant management (admin token); every other ``/v1`` resource route sits
behind ``authenticate_tenant`` (API key), mounted once on the ``tenant_api`` parent blueprint so
that no route can forget it.
"""

from __future__ import annotations

from flask import Blueprint, Flask

from relay.api.app_keys import admin_app_keys, app_keys
from relay.api.apps import apps
from relay.api.auth import authenticate_tenant
from relay.api.chat import chat
from relay.api.cors import register_cors
from relay.api.datasets import datasets
from relay.api.dead_letters import dead_letters
from relay.api.dify import DIFY_PREFIX, dify_api
from relay.api.documents import documents
from relay.api.errors import register_error_handlers
from relay.api.messages import messages
from relay.api.openapi import docs
from relay.api.ops import ops
from relay.api.request_log import register_request_log
from relay.api.task_records import task_records
from relay.api.tasks import tasks
from relay.api.tenants import tenants
from relay.api.tool_providers import tool_providers
from relay.api.workflows import workflows

# Largest request body any endpoint reads (document uploads stay well below it).
MAX_REQUEST_BYTES = 16 * 1024 * 1024


def _tenant_api() -> Blueprint:
    parent = Blueprint("tenant_api", __name__)
    parent.before_request(authenticate_tenant)
    for child in (apps, datasets, documents, messages, dead_letters, tasks, task_records):
        parent.register_blueprint(child)
    parent.register_blueprint(workflows)
    parent.register_blueprint(chat)
    parent.register_blueprint(app_keys)
    parent.register_blueprint(tool_providers)
    return parent


def register_api(app: Flask) -> None:
    """Mount every blueprint, the OpenAPI document and the single error handler."""
    if app.config.get("MAX_CONTENT_LENGTH") is None:
        app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    register_error_handlers(app)
    register_request_log(app)
    register_cors(app)
    app.register_blueprint(ops)
    app.register_blueprint(docs)
    app.register_blueprint(tenants, url_prefix="/v1")
    app.register_blueprint(_tenant_api(), url_prefix="/v1")
    app.register_blueprint(admin_app_keys, url_prefix="/v1")
    app.register_blueprint(dify_api(), url_prefix=DIFY_PREFIX)
