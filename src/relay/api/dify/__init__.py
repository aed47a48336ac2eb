"""A Dify-compatible Service API under ``/dify/v1``: Dify clients need only a base URL and an
app key (``app-...``).

The routes follow Dify's Service API reference (paths, bodies, answers, the streaming protocol
and the error shape ``{"code", "message", "status"}``) and call relay's services: tenant and app
scoping from the key, admission (429 ``rate_limit_error``), the fair scheduler and the outbox for
runs, run streams for streaming answers.
"""

from __future__ import annotations

from flask import Blueprint

from relay.api.dify.resources import resources
from relay.api.dify.runs import runs
from relay.api.dify.service import authenticate_app, install_error_handlers

DIFY_PREFIX = "/dify/v1"


def dify_api() -> Blueprint:
    """The parent blueprint: app-key authentication and Dify's errors for every route."""
    parent = Blueprint("dify", __name__)
    parent.before_request(authenticate_app)
    install_error_handlers(parent)
    parent.register_blueprint(runs)
    parent.register_blueprint(resources)
    return parent
