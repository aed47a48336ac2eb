"""Reading requests and writing answers, the same way in every handler.

A body that is not JSON, or JSON that is not an object, is a 400 ``bad_request`` naming the
problem; it is never taken for an empty object. A JSON object that does not fit the model is a
400 ``invalid_input`` with one entry per field (the pydantic ``ValidationError`` handler).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, TypeVar

from flask import Response, jsonify, request
from pydantic import BaseModel, StringConstraints

from relay.errors import BadRequest

M = TypeVar("M", bound=BaseModel)

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
"""A display name: trimmed, 1 to 255 characters."""


def json_body() -> dict[str, Any]:
    """The request's JSON object; ``{}`` for an empty body, ``BadRequest`` for anything else."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        return {}
    if not request.is_json:
        raise BadRequest(
            "request body must be JSON (Content-Type: application/json)",
            details={"content_type": request.content_type},
        )
    try:
        value = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise BadRequest(f"malformed JSON body: {exc}") from None
    if not isinstance(value, dict):
        raise BadRequest("JSON body must be an object", details={"received": type(value).__name__})
    return value


def parse_body(model: type[M]) -> M:
    """The JSON body validated as ``model``."""
    return model.model_validate(json_body())


def parse_query(model: type[M]) -> M:
    """The query string validated as ``model`` (the first value of a repeated parameter)."""
    return model.model_validate(request.args.to_dict())


def respond(model: BaseModel, status: int = 200) -> tuple[Response, int]:
    """``model`` as JSON (wire names, ISO 8601 timestamps)."""
    return jsonify(model.model_dump(mode="json", by_alias=True)), status


def no_content() -> tuple[Response, int]:
    """The answer to a successful delete."""
    return Response(status=204), 204
