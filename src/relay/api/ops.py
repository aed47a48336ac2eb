"""Operational endpoints: ``/health`` (and its levels, ``/health/live``, ``/health/ready``) and
``/metrics``.

``/metrics`` asks for ``Authorization: Bearer <RELAY_MONITORING_METRICS_TOKEN>`` when that token
is set (401 JSON otherwise); scrapers outside the host should never see queue and tenant load.
"""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, current_app, jsonify

from relay.api.auth import bearer_token, current_runtime
from relay.errors import Unauthorized

ops = Blueprint("ops", __name__)


@ops.get("/health")
def health() -> tuple[Response, int]:
    """200 when Redis, the database and a consumer per routed queue are all fine, else 503."""
    report = current_app.extensions["relay"].health.check()
    return jsonify(report.as_dict()), 200 if report.healthy else 503


@ops.get("/health/live")
def health_live() -> tuple[Response, int]:
    """200 while the process answers; checks nothing outside it."""
    return jsonify(current_app.extensions["relay"].readiness.live()), 200


@ops.get("/health/ready")
def health_ready() -> tuple[Response, int]:
    """Every component healthy, warning or critical with its value and thresholds; 503 when one
    is critical."""
    report = current_app.extensions["relay"].readiness.ready()
    return jsonify(report.as_dict()), 200 if report.ready else 503


@ops.get("/metrics")
def metrics() -> Response:
    """Prometheus exposition."""
    expected = current_runtime().settings.monitoring.metrics_token
    if expected:
        token = bearer_token()
        if token is None or not hmac.compare_digest(token.encode(), expected.encode()):
            raise Unauthorized("missing or invalid metrics token")
    body = current_app.extensions["relay"].metrics.render()
    return Response(body, mimetype="text/plain; version=0.0.4")
