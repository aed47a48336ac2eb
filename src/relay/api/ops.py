"""Operational endpoints: ``/health`` (and its levels, ``/health/live``, ``/health/ready``) and
``/metrics``."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

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
    body = current_app.extensions["relay"].metrics.render()
    return Response(body, mimetype="text/plain; version=0.0.4")
