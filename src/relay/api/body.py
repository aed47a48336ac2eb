"""Reading requests and writing answers, the same way in every handler.

A body that is not JSON, or JSON that is not an object, is a 400 ``bad_request`` naming the
problem; it is never taken for an empty object. A body that parses but holds what no handler
should see (deep nesting, NUL characters, lone surrogates, numbers beyond 64 bits, NaN) is a 400
with its own code (``relay.api.input_guard``). A JSON object that does not fit the model is a
400 ``invalid_input`` with one entry per field (the pydantic ``ValidationError`` handler).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, TypeVar

from flask import Response, jsonify, request
from pydantic import BaseModel, StringConstraints

from relay.api.input_guard import NumberOutOfRange, check_texts, check_value, too_deep
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
        value = json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise too_deep() from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, int digit limit
        raise BadRequest(f"malformed JSON body: {exc}") from None
    if not isinstance(value, dict):
        raise BadRequest("JSON body must be an object", details={"received": type(value).__name__})
    check_value(value)
    return value


def _reject_constant(name: str) -> Any:
    raise NumberOutOfRange(f"{name} is not a JSON number", details={"value": name})


def parse_body(model: type[M]) -> M:
    """The JSON body validated as ``model``."""
    return model.model_validate(json_body())


class InvalidQuery(BadRequest):
    """The query string names a parameter the endpoint does not take."""

    code = "invalid_input"


def parse_query(model: type[M]) -> M:
    """The query string validated as ``model`` (the first value of a repeated parameter).

    A parameter the model does not know is refused (400 ``invalid_input``), as unknown body
    fields are: a misspelt ``limt=`` must not silently fall back to the default.
    """
    check_texts(request.args.items(multi=True), "query")
    known = {field.alias or name for name, field in model.model_fields.items()}
    unknown = sorted(set(request.args) - known)
    if unknown:
        raise InvalidQuery(
            "request failed validation",
            details=[{"field": name, "message": "unknown query parameter"} for name in unknown],
        )
    return model.model_validate(request.args.to_dict())


def respond(model: BaseModel, status: int = 200) -> tuple[Response, int]:
    """``model`` as JSON (wire names, ISO 8601 timestamps)."""
    return jsonify(model.model_dump(mode="json", by_alias=True)), status


def no_content() -> tuple[Response, int]:
    """The answer to a successful delete."""
    return Response(status=204), 204
