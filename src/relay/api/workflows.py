"""Workflow runs of the calling tenant: run (streamed over SSE or blocking), events, stop, detail.

A streamed answer is ``text/event-stream``: every event of the run carries ``id:`` (its stream
id), ``event:`` and one ``data:`` line of JSON with ``workflow_run_id``; pings have no id. A
client that loses the connection reconnects to ``GET /v1/workflows/runs/<run_id>/events`` with
``Last-Event-ID`` (header, or ``last_event_id`` in the query for clients that cannot set it)
and gets every later event exactly once, from any API process. A process that is shutting down
ends its open streams at the next event boundary with a short ``retry:`` hint, so clients
reconnect at once (to another process) without losing or repeating an event.

Browsers: ``POST /v1/workflows/runs/<run_id>/stream-token`` gives a short-lived token that
``EventSource`` passes as ``?stream_token=`` (it cannot set headers); a resume after the
terminal event answers 204, which makes ``EventSource`` stop reconnecting. A failed run ends
with ``event: run_error`` (``event: error`` would look like EventSource's own connection error
event); ``?event_names=dify`` keeps Dify's ``error``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from flask import Blueprint, Response, request, url_for
from pydantic import BaseModel, ConfigDict, Field
from werkzeug.wrappers import Response as WerkzeugResponse

from relay.adapters.prometheus import Metrics
from relay.api.auth import (
    STREAM_TOKEN_PARAM,
    current_runtime,
    principal,
    stream_grant,
    stream_tokens,
    tenant_id,
)
from relay.api.body import parse_body, parse_query, respond
from relay.api.openapi import TENANT, documented, streams
from relay.errors import BadRequest
from relay.resilience.shutdown import DRAIN
from relay.services.run_list_service import RunFilter, RunListService, RunPage
from relay.services.stream_tokens import StreamGrant, StreamToken
from relay.services.workflow_run_service import (
    RunDetail,
    RunResult,
    StopResult,
    WorkflowRunService,
)
from relay.streaming import QueueEvent, StreamItem, sse

workflows = Blueprint("workflows", __name__)

SHUTDOWN_RETRY_MS = 250
"""Reconnection delay sent with the end of a stream cut short by a shutdown."""
streams("post", "/v1/workflows/run")
streams("get", "/v1/workflows/runs/{run_id}/events")

_TAGS = ("workflows",)

EndUser = Annotated[
    str,
    Field(
        min_length=1, max_length=255, description="The end user's identifier, chosen by the caller"
    ),
]


class WorkflowRunRequest(BaseModel):
    """Run an app's published workflow."""

    model_config = ConfigDict(extra="forbid")

    app_id: str = Field(min_length=1, max_length=64)
    inputs: dict[str, Any] = Field(default_factory=dict, description="The start node's inputs")
    response_mode: Literal["streaming", "blocking"] = "streaming"
    user: EndUser


class RunOwner(BaseModel):
    """Whose run this is (only its end user may read or stop it)."""

    model_config = ConfigDict(extra="forbid")

    user: EndUser


EventNames = Literal["relay", "dify"]
RUN_ERROR = "run_error"
"""The wire name of a failed run's terminal event (``error`` with ``event_names=dify``)."""


class StreamOptions(BaseModel):
    """How the stream names its events."""

    model_config = ConfigDict(extra="forbid")

    event_names: EventNames = Field(
        "relay",
        description="`relay`: a failed run ends with `event: run_error`; `dify`: with "
        "`event: error`, as Dify's API does",
    )


class EventsQuery(StreamOptions):
    """Whose run, and where to resume."""

    user: EndUser | None = Field(
        None, description="The run's end user (required unless `stream_token` is given)"
    )
    last_event_id: str | None = Field(
        None, max_length=64, description="Resume after this event (or the Last-Event-ID header)"
    )
    stream_token: str | None = Field(
        None,
        max_length=1024,
        description="A token from `POST /v1/workflows/runs/{run_id}/stream-token`, for clients "
        "that cannot send `Authorization` (EventSource)",
    )


class BlockingRun(BaseModel):
    """A finished run (blocking mode)."""

    workflow_run_id: str
    data: RunResult


def _service() -> WorkflowRunService:
    return WorkflowRunService(current_runtime())


def sse_response(
    items: Iterator[StreamItem],
    run_id: str,
    names: EventNames = "relay",
    *,
    kind: str = "workflow",
    resumed: bool = False,
    metrics: Metrics | None = None,
) -> WerkzeugResponse:
    """The run's events as Server-Sent Events (``workflow_run_id`` added to every payload).

    Counted in the stream ``metrics`` (the runtime's unless given): open streams and streams
    served by ``kind``, whether the client ``resumed``, and events sent (pings excluded).
    """
    prefix = '{"workflow_run_id":' + json.dumps(run_id) + ","
    renamed = {QueueEvent.ERROR.value: RUN_ERROR} if names == "relay" else {}
    metrics = metrics or current_runtime().metrics
    metrics.sse_streams.labels(kind, "true" if resumed else "false").inc()
    sent = metrics.sse_events.labels(kind)
    open_streams = metrics.sse_open.labels(kind)

    def body() -> Iterator[bytes]:
        open_streams.inc()
        try:
            yield sse.retry()
            final = False
            for item in items:
                # The data is a JSON object from the stream; splicing the run id in avoids a
                # decode/encode per event on the hot path.
                data = prefix + item.data[1:] if item.data.startswith("{") else item.data
                final = item.final
                yield sse.encode(data, event=renamed.get(item.event, item.event), id=item.id)
                if item.event != QueueEvent.PING:
                    sent.inc()
            if not final and DRAIN.is_set():
                # The process is stopping: come back soon (to another process) from the last id.
                yield sse.retry(SHUTDOWN_RETRY_MS)
                yield sse.comment("server shutting down; reconnect with Last-Event-ID")
        finally:
            open_streams.dec()

    # A plain werkzeug response: the OpenAPI wrapper (spectree) reads the body of a flask
    # Response to validate it, which would buffer the whole stream; Flask adopts this one as is.
    response = WerkzeugResponse(body(), mimetype="text/event-stream", direct_passthrough=True)
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass events on at once
    response.headers["X-Relay-Run-Id"] = run_id
    return response


@workflows.post("/workflows/run")
@documented(
    tags=_TAGS, security=TENANT, json=WorkflowRunRequest, ok=(200, BlockingRun),
    errors=(404, 409, 429),
)  # fmt: skip
def run_workflow() -> WerkzeugResponse | tuple[Response, int]:
    """Run a workflow app: ``text/event-stream`` (streaming) or the finished run (blocking)."""
    body = parse_body(WorkflowRunRequest)
    options = parse_query(StreamOptions)
    service = _service()
    tenant = tenant_id()
    started = service.start(tenant, body.app_id, user=body.user, inputs=body.inputs)
    if body.response_mode == "blocking":
        result, _ = service.wait(tenant, started.run_id, body.user)
        return respond(BlockingRun(workflow_run_id=started.run_id, data=result))
    items = service.events(tenant, started.run_id, body.user, until=DRAIN.is_set)
    return sse_response(items, started.run_id, options.event_names)


@workflows.get("/workflows/runs")
@documented(tags=_TAGS, security=TENANT, query=RunFilter, ok=(200, RunPage))
def list_runs() -> tuple[Response, int]:
    """The tenant's runs, newest first; filter by ``app_id``, ``status``, ``user`` and time.

    Times are ISO 8601 with an offset (``2026-12-03T10:00:00Z``; encode ``+`` as ``%2B``).
    Read one run with ``GET /v1/workflows/runs/<id>?user=<the user that started it>``.
    """
    query = parse_query(RunFilter)
    return respond(RunListService(current_runtime()).list_runs(tenant_id(), query))


@workflows.get("/workflows/runs/<run_id>/events")
@documented(tags=_TAGS, security=TENANT, query=EventsQuery, ok=(200, None), errors=(404,))
def run_events(run_id: str) -> WerkzeugResponse | Response:
    """The run's events as ``text/event-stream``, after ``Last-Event-ID`` when given.

    204 when the client already has the terminal event (``EventSource`` then stops).
    """
    query = parse_query(EventsQuery)
    grant = stream_grant()
    user = grant.user if grant is not None else query.user
    if user is None:
        raise BadRequest("user is required (or a stream_token)", details=[{"field": "user"}])
    if grant is not None and query.user is not None and query.user != grant.user:
        raise BadRequest("user does not match the stream token", details=[{"field": "user"}])
    after = request.headers.get("Last-Event-ID") or query.last_event_id
    service = _service()
    items = service.events(tenant_id(), run_id, user, after=after, until=DRAIN.is_set)
    if service.delivered_all(run_id, after):
        return Response(status=204)  # a flask Response: the OpenAPI wrapper keeps its status
    return sse_response(items, run_id, query.event_names, resumed=after is not None)


@workflows.post("/workflows/runs/<run_id>/stream-token")
@documented(tags=_TAGS, security=TENANT, json=RunOwner, ok=(200, StreamToken), errors=(404,))
def stream_token(run_id: str) -> tuple[Response, int]:
    """A short-lived token that reads this run's events without ``Authorization``.

    Pass it as ``?stream_token=`` to ``GET /v1/workflows/runs/<run_id>/events`` (a browser's
    ``EventSource``); it is refused for any other run and after ``expires_at``.
    """
    body = parse_body(RunOwner)
    caller = principal()
    _service().check_owner(caller.tenant_id, run_id, body.user)
    grant = StreamGrant(caller.tenant_id, caller.api_key_id, run_id, body.user)
    token, expires_at = stream_tokens().issue(grant)
    params: dict[str, Any] = {STREAM_TOKEN_PARAM: token}
    url = url_for(".run_events", run_id=run_id, **params)
    return respond(StreamToken(token=token, run_id=run_id, expires_at=expires_at, events_url=url))


@workflows.post("/workflows/runs/<run_id>/stop")
@documented(tags=_TAGS, security=TENANT, json=RunOwner, ok=(200, StopResult), errors=(404,))
def stop_run(run_id: str) -> tuple[Response, int]:
    """Stop the run: it ends with a ``stop`` event and its record says ``stopped``."""
    body = parse_body(RunOwner)
    return respond(_service().stop(tenant_id(), run_id, body.user))


@workflows.get("/workflows/runs/<run_id>")
@documented(tags=_TAGS, security=TENANT, query=RunOwner, ok=(200, RunDetail), errors=(404,))
def get_run(run_id: str) -> tuple[Response, int]:
    """The run: status, outputs, timings, token usage and node executions."""
    query = parse_query(RunOwner)
    return respond(_service().detail(tenant_id(), run_id, query.user))
