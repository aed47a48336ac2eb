"""One error handler: every failure becomes ``{"code", "message", "details"}`` with a 4xx/5xx."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Flask, Response, g, jsonify, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from relay.api.auth import tenant_or_none
from relay.api.input_guard import guard_request
from relay.errors import RelayError
from relay.resilience.outages import RETRY_AFTER, as_outage
from relay.runtime import Runtime

log = logging.getLogger(__name__)

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


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
        if exc.status == 503 and retry_after is None:
            retry_after = RETRY_AFTER
        if exc.status in (429, 503) and retry_after is not None:
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
        response = jsonify(error_body(code, exc.description or code))
        # Keep what the exception says about itself (Allow on 405, WWW-Authenticate, ...).
        for name, value in exc.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response, status

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        outage = as_outage(exc)
        if outage is not None:
            # Redis, the broker or the database is down: a 503 the client can retry, and the
            # next request after recovery succeeds (the clients reconnect by themselves).
            return _relay_error(outage)
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

    app.before_request(guard_request)

    @app.after_request
    def _count(response: Response) -> Response:
        runtime: Runtime = app.extensions["relay"]
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        # Any token is a valid HTTP method: only known ones become label values.
        method = request.method if request.method in _METHODS else "other"
        runtime.metrics.http_requests.labels(method, endpoint, response.status_code).inc()
        started = g.get("relay_started")
        if started is not None:
            runtime.metrics.http_latency.labels(endpoint).observe(time.perf_counter() - started)
        return response
