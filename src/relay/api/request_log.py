"""Request identity for the access log: ``X-Request-Id`` in and out, and what the server's
one-line-per-request log needs from inside the app.

A caller's ``X-Request-Id`` is kept when it is a plain token (letters, digits, ``.``, ``_``,
``-``; at most 128), otherwise a new one is made; every response carries it back. The request
id, the authenticated tenant and the trace and span ids of the request's server span are left
in the WSGI environ under ``relay.*`` keys, where gunicorn's access logger reads them once the
response is sent (``relay.server``).
"""

from __future__ import annotations

import re
import uuid

from flask import Flask, Response, g, request

from relay.adapters.tracing import current_ids
from relay.api.auth import tenant_or_none

HEADER = "X-Request-Id"
REQUEST_ID = "relay.request_id"
TENANT_ID = "relay.tenant_id"
TRACE_ID = "relay.trace_id"
SPAN_ID = "relay.span_id"
_TOKEN = re.compile(r"[A-Za-z0-9._-]{1,128}")


def register_request_log(app: Flask) -> None:
    """Give every request an id and leave its log fields in the environ."""

    @app.before_request
    def _request_id() -> None:
        request.environ[REQUEST_ID] = _request_id_of()

    @app.after_request
    def _answer(response: Response) -> Response:
        request_id = _request_id_of()
        response.headers[HEADER] = request_id
        environ = request.environ
        environ[REQUEST_ID] = request_id
        environ[TENANT_ID] = tenant_or_none()
        ids = current_ids()
        if ids is not None:
            environ[TRACE_ID], environ[SPAN_ID] = ids
        return response


def _request_id_of() -> str:
    """This request's id: the caller's when it is a plain token, else a new one (kept in ``g``)."""
    found = g.get("relay_request_id")
    if found is None:
        given = request.headers.get(HEADER, "")
        found = given if _TOKEN.fullmatch(given) else uuid.uuid4().hex
        g.relay_request_id = found
    return str(found)
