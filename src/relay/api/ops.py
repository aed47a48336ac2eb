"""Operational endpoints: ``/health`` and ``/metrics``."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

ops = Blueprint("ops", __name__)


@ops.get("/health")
def health() -> tuple[Response, int]:
    """200 when Redis, the database and a consumer per routed queue are all fine, else 503."""
    report = current_app.extensions["relay"].health.check()
    return jsonify(report.as_dict()), 200 if report.healthy else 503


@ops.get("/metrics")
def metrics() -> Response:
    """Prometheus exposition."""
    body = current_app.extensions["relay"].metrics.render()
    return Response(body, mimetype="text/plain; version=0.0.4")
