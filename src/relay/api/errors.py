"""One error handler: every failure becomes ``{"code", "message", "details"}`` with a 4xx/5xx."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Flask, Response, g, jsonify, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from relay.api.auth import tenant_or_none
from relay.errors import RelayError
from relay.runtime import Runtime

log = logging.getLogger(__name__)


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"code": code, "message": message, "details": details}


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(RelayError)
    def _relay_error(exc: RelayError) -> tuple[Response, int]:
        if exc.status >= 500:
            log.error(exc.message, extra={"action": "api.error", "code": exc.code})
        response = jsonify(error_body(exc.code, exc.message, exc.details))
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="relay"'
        retry_after = exc.details.get("retry_after") if isinstance(exc.details, dict) else None
        if exc.status == 429 and retry_after is not None:
            response.headers["Retry-After"] = str(retry_after)
        return response, exc.status

    @app.errorhandler(ValidationError)
    def _validation(exc: ValidationError) -> tuple[Response, int]:
        details = [
            {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()
        ]
        return jsonify(error_body("invalid_input", "request failed validation", details)), 400

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> tuple[Response, int]:
        code = (exc.name or "error").lower().replace(" ", "_")
        status = exc.code or 500
        return jsonify(error_body(code, exc.description or code)), status

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("unhandled error", extra={"action": "api.unhandled"})
        runtime: Runtime = app.extensions["relay"]
        runtime.errors.capture(
            exc,
            tags={
                "relay.endpoint": request.url_rule.rule if request.url_rule else "unmatched",
                "relay.method": request.method,
                "relay.tenant_id": tenant_or_none(),
            },
        )
        return jsonify(error_body("internal_error", "internal server error")), 500

    @app.before_request
    def _start_timer() -> None:
        g.relay_started = time.perf_counter()

    @app.after_request
    def _count(response: Response) -> Response:
        runtime: Runtime = app.extensions["relay"]
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        runtime.metrics.http_requests.labels(request.method, endpoint, response.status_code).inc()
        started = g.get("relay_started")
        if started is not None:
            runtime.metrics.http_latency.labels(endpoint).observe(time.perf_counter() - started)
        return response
