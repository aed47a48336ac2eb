"""The request side shared by the Dify-compatible routes: the app key, errors and bodies.

Every route sits behind :func:`authenticate_app` (``Authorization: Bearer app-...``); the app a
request acts on is always the key's. Errors answer in Dify's shape, ``{"code", "message",
"status"}``, with Dify's codes (``invalid_param``, ``not_found``, ``unauthorized``,
``app_unavailable``, ``not_workflow_app``, ``not_chat_app``, ``rate_limit_error``...).
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

from flask import Blueprint, Response, g, jsonify, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import HTTPException

from relay.api.auth import bearer_token, current_runtime
from relay.api.body import json_body
from relay.errors import RelayError
from relay.resilience.outages import RETRY_AFTER, as_outage
from relay.services.app_keys import AppKeyService, AppPrincipal

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

_PRINCIPAL = "relay_app_principal"

# relay's codes that Dify names otherwise.
_CODES = {
    "invalid_input": "invalid_param",
    "bad_request": "invalid_param",
    "quota_exceeded": "rate_limit_error",
    "workflow_not_published": "app_unavailable",
    "invalid_workflow": "app_unavailable",
    "invalid_inputs": "invalid_param",
    "body_too_deep": "invalid_param",
    "nul_character": "invalid_param",
    "invalid_unicode": "invalid_param",
    "number_out_of_range": "invalid_param",
    "invalid_model_config": "app_unavailable",
}

# Dify answers these with another status than relay's error of the same meaning.
_STATUS = {"app_unavailable": 400}


class DifyError(RelayError):
    """An error with Dify's own code (``app_unavailable``, ``not_chat_app``...)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def dify_error(code: str, message: str, status: int) -> tuple[Response, int]:
    return jsonify({"code": code, "message": message, "status": status}), status


def authenticate_app() -> None:
    """``before_request``: 401 unless the app key is known and active."""
    if request.method == "OPTIONS":
        return
    token = bearer_token()
    if token is None:
        raise DifyError(
            "unauthorized", "Authorization header must be provided and start with 'Bearer'", 401
        )
    setattr(g, _PRINCIPAL, AppKeyService(current_runtime()).authenticate(token))


def app_principal() -> AppPrincipal:
    """The app (and tenant) whose key authenticated this request."""
    found = g.get(_PRINCIPAL)
    if not isinstance(found, AppPrincipal):
        raise RuntimeError("Dify route is not behind authenticate_app")
    return found


def parse(model: type[M], values: dict[str, Any] | None = None) -> M:
    """``values`` (default: the JSON body) validated as ``model``."""
    return model.model_validate(json_body() if values is None else values)


def query_args() -> dict[str, Any]:
    """The query string (first value of each parameter)."""
    return request.args.to_dict()


def install_error_handlers(blueprint: Blueprint) -> None:
    """Every failure of the blueprint's routes in Dify's error shape."""

    @blueprint.errorhandler(RelayError)
    def _relay(exc: RelayError) -> tuple[Response, int]:
        if exc.status >= 500:
            log.error(exc.message, extra={"action": "dify_api.error", "code": exc.code})
        code = exc.code if isinstance(exc, DifyError) else _CODES.get(exc.code, exc.code)
        message = exc.message
        if code == "invalid_param" and isinstance(exc.details, list) and exc.details:
            first = exc.details[0]
            if isinstance(first, dict):
                message = f"{first.get('field')}: {first.get('message')}"
        response, status = dify_error(code, message, _STATUS.get(code, exc.status))
        retry_after = exc.details.get("retry_after") if isinstance(exc.details, dict) else None
        if exc.status == 503 and retry_after is None:
            retry_after = RETRY_AFTER
        if exc.status in (429, 503) and retry_after is not None:
            response.headers["Retry-After"] = str(retry_after)
        return response, status

    @blueprint.errorhandler(ValidationError)
    def _validation(exc: ValidationError) -> tuple[Response, int]:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "body"
        return dify_error("invalid_param", f"{field}: {first['msg']}", 400)

    @blueprint.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        code = (exc.name or "error").lower().replace(" ", "_")
        return dify_error(code, exc.description or code, status)

    @blueprint.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        outage = as_outage(exc)
        if outage is not None:
            return _relay(outage)
        log.exception("unhandled error", extra={"action": "dify_api.unhandled"})
        current_runtime().errors.capture(exc, tags={"relay.endpoint": request.path})
        return dify_error("internal_server_error", "Internal Server Error", 500)
