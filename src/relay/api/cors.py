"""CORS for browsers on other origins, by an allow-list (``RELAY_API_CORS_ORIGINS``).

A preflight (``OPTIONS`` with ``Access-Control-Request-Method``) is answered here, before any
authentication: browsers never send credentials on it. Only an allowed ``Origin`` gets
``Access-Control-*`` headers, on the preflight and on the actual answer; any other origin gets
none, so its browser refuses to hand the answer to the page.
"""

from __future__ import annotations

from flask import Flask, Response, request

from relay.api.auth import current_runtime

ALLOWED_METHODS = "GET, POST, PUT, PATCH, DELETE"
ALLOWED_HEADERS = "Authorization, Content-Type, Last-Event-ID"
EXPOSED_HEADERS = "X-Relay-Run-Id, Retry-After"
PREFLIGHT_MAX_AGE = "600"


def _allowed_origin() -> str | None:
    origin = request.headers.get("Origin")
    if not origin:
        return None
    allowed = current_runtime().settings.api.cors_origins
    return origin if origin in allowed or "*" in allowed else None


def preflight() -> Response | None:
    """``before_request``: answer a CORS preflight with 204 (headers only when allowed)."""
    if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
        return None
    response = Response(status=204)
    origin = _allowed_origin()
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
        response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
        response.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
    response.vary.add("Origin")
    return response


def add_headers(response: Response) -> Response:
    """``after_request``: CORS headers on answers to allowed origins."""
    if request.method == "OPTIONS":
        return response
    origin = _allowed_origin()
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
    if request.headers.get("Origin"):
        response.vary.add("Origin")
    return response


def register_cors(app: Flask) -> None:
    """Install the preflight answer (first of every request) and the response headers."""
    app.before_request_funcs.setdefault(None, []).insert(0, preflight)
    app.after_request(add_headers)
