"""HTTP API: blueprints parse the request, call one service and serialise the answer."""

from __future__ import annotations

from flask import Flask

from relay.api.errors import register_error_handlers
from relay.api.ops import ops
from relay.api.tasks import tasks


def register_api(app: Flask) -> None:
    """Mount every blueprint and the single error handler."""
    register_error_handlers(app)
    app.register_blueprint(ops)
    app.register_blueprint(tasks, url_prefix="/v1")
