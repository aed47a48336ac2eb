"""OpenAPI for the ``/v1`` API, derived by spectree from the request and response models.

Handlers parse their own input (``relay.api.body``) so that a malformed body is a clear 400 and
every error has relay's shape; spectree here only documents (``skip_validation=True``). The
document is served at ``/openapi.json``, Swagger UI at ``/docs`` and ReDoc at ``/docs/redoc``,
both from assets shipped in the package (``api/static``: swagger-ui-dist and redoc from npm), so
the pages work without internet access.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypeVar, cast

from flask import Blueprint, Response, jsonify, url_for
from pydantic import BaseModel
from spectree import Response as SpecResponse
from spectree import SecurityScheme, SecuritySchemeData, SpecTree
from spectree.models import SecureType

F = TypeVar("F", bound=Callable[..., Any])

ADMIN_SCHEME = "AdminToken"
TENANT_SCHEME = "ApiKey"
ADMIN: dict[str, list[str]] = {ADMIN_SCHEME: []}
TENANT: dict[str, list[str]] = {TENANT_SCHEME: []}
SPEC_URL = "/openapi.json"


class ErrorBody(BaseModel):
    """Every error: a machine-readable code, a message for people, optional details."""

    code: str
    message: str
    details: Any = None


def _version() -> str:
    try:
        return version("relay")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0"


spec = SpecTree(
    "flask",
    mode="strict",  # only the routes documented below; /health and /metrics are operational
    annotations=False,
    title="relay API",
    description=(
        "Tenant-scoped REST API of relay. Tenant endpoints take `Authorization: Bearer <API key>`"
        " (the key decides the tenant); tenant management takes the operator's admin token."
    ),
    version=_version(),
    # Plain class names (the default adds a hash); nested models are shared by their own name.
    naming_strategy=lambda model: model.__name__,
    nested_naming_strategy=lambda _parent, child: child,
    validation_error_status=400,
    validation_error_model=ErrorBody,
    security_schemes=[
        SecurityScheme(
            name=TENANT_SCHEME,
            data=SecuritySchemeData(
                type=SecureType.HTTP, scheme="bearer", description="A tenant's API key (relay-...)"
            ),
        ),
        SecurityScheme(
            name=ADMIN_SCHEME,
            data=SecuritySchemeData(
                type=SecureType.HTTP,
                scheme="bearer",
                description="The operator's RELAY_API_ADMIN_TOKEN",
            ),
        ),
    ],
)

_ERRORS = {
    401: "missing or invalid credentials",
    403: "forbidden: admin endpoints with no admin token configured, an archived tenant, "
    "or a limit of the tenant's plan",
    404: "not found for this tenant",
    409: "conflicts with the resource's state",
    413: "too large",
    429: "over quota",
}


def documented(
    *,
    tags: tuple[str, ...],
    security: dict[str, list[str]] | None,
    ok: tuple[int, type[BaseModel] | None],
    errors: tuple[int, ...] = (),
    json: type[BaseModel] | None = None,
    form: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
) -> Callable[[F], F]:
    """Describe a handler in the OpenAPI document: its input models and its answers.

    ``ok`` is the success status and model (None for an empty answer). 400 is added to every
    operation and 401 and 403 to those with ``security``; ``errors`` lists the other error
    statuses.
    """
    responses: dict[str, Any] = {f"HTTP_{ok[0]}": ok[1]}
    # Any credentialed call may be refused (401) or forbidden (403: admin off, tenant archived).
    for status in sorted({*((401, 403) if security else ()), *errors}):
        responses[f"HTTP_{status}"] = (ErrorBody, _ERRORS[status])
    decorator = spec.validate(
        json=json,
        form=form,
        query=query,
        resp=SpecResponse(**responses),
        tags=tags,
        security=security,
        skip_validation=True,
    )

    def wrap(func: F) -> F:
        return cast(F, decorator(func))

    return wrap


_STREAMING: set[tuple[str, str]] = set()
_SSE_CONTENT = {
    "text/event-stream": {
        # One event of the stream (pings carry no id).
        "schema": {
            "type": "object",
            "description": "Server-sent events: `id:`, `event:` and one `data:` line of JSON each",
            "properties": {
                "id": {"type": "string"},
                "event": {"type": "string"},
                "data": {"type": "string", "contentMediaType": "application/json"},
                "retry": {"type": "integer"},
            },
        }
    }
}


def streams(method: str, path: str) -> None:
    """Document that ``method path`` may answer 200 as ``text/event-stream``."""
    _STREAMING.add((method.lower(), path))


def openapi_document() -> dict[str, Any]:
    """spectree's document plus what it cannot express (streamed answers)."""
    document: dict[str, Any] = copy.deepcopy(spec.spec)
    for method, path in _STREAMING:
        operation = document.get("paths", {}).get(path, {}).get(method)
        if operation is None:
            continue
        ok = operation.setdefault("responses", {}).setdefault("200", {"description": "OK"})
        ok.setdefault("content", {}).update(copy.deepcopy(_SSE_CONTENT))
    return document


docs = Blueprint("openapi_docs", __name__, static_folder="static", static_url_path="/docs/static")

_SWAGGER_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>relay API</title>
  <link rel="stylesheet" href="{css}">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{js}"></script>
  <script>
    window.ui = SwaggerUIBundle({{url: "{spec_url}", dom_id: "#swagger-ui", deepLinking: true}});
  </script>
</body>
</html>
"""

_REDOC_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>relay API</title>
</head>
<body>
  <redoc spec-url="{spec_url}"></redoc>
  <script src="{js}"></script>
</body>
</html>
"""


@docs.get(SPEC_URL)
def openapi_json() -> Response:
    """The OpenAPI 3.1 document."""
    return jsonify(openapi_document())


@docs.get("/docs")
def swagger() -> str:
    """Swagger UI on the OpenAPI document."""
    return _SWAGGER_PAGE.format(
        css=url_for(".static", filename="swagger-ui.css"),
        js=url_for(".static", filename="swagger-ui-bundle.js"),
        spec_url=SPEC_URL,
    )


@docs.get("/docs/redoc")
def redoc() -> str:
    """ReDoc on the OpenAPI document."""
    return _REDOC_PAGE.format(
        js=url_for(".static", filename="redoc.standalone.js"), spec_url=SPEC_URL
    )
