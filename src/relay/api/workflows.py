"""Workflow runs of the calling tenant: run (streamed over SSE or blocking), events, stop, detail.

A streamed answer is ``text/event-stream``: every event of the run carries ``id:`` (its stream
id), ``event:`` and one ``data:`` line of JSON with ``workflow_run_id``; pings have no id. A
client that loses the connection reconnects to ``GET /v1/workflows/runs/<run_id>/events`` with
``Last-Event-ID`` (header, or ``last_event_id`` in the query for clients that cannot set it)
and gets every later event exactly once, from any API process. A process that is shutting down
ends its open streams at the next event boundary with a short ``retry:`` hint, so clients
reconnect at once (to another process) without losing or repeating an event.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from flask import Blueprint, Response, request
from pydantic import BaseModel, ConfigDict, Field
from werkzeug.wrappers import Response as WerkzeugResponse

from relay.api.auth import current_runtime, tenant_id
from relay.api.body import parse_body, parse_query, respond
from relay.api.openapi import TENANT, documented, streams
from relay.resilience.shutdown import DRAIN
from relay.services.run_list_service import RunFilter, RunListService, RunPage
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


class EventsQuery(RunOwner):
    """Whose run, and where to resume."""

    last_event_id: str | None = Field(
        None, max_length=64, description="Resume after this event (or the Last-Event-ID header)"
    )


class BlockingRun(BaseModel):
    """A finished run (blocking mode)."""

    workflow_run_id: str
    data: RunResult


def _service() -> WorkflowRunService:
    return WorkflowRunService(current_runtime())


def sse_response(
    items: Iterator[StreamItem], run_id: str, *, kind: str = "workflow", resumed: bool = False
) -> WerkzeugResponse:
    """The run's events as Server-Sent Events (``workflow_run_id`` added to every payload).

    Counted in the stream metrics: open streams and streams served by ``kind``, whether the
    client ``resumed``, and events sent (pings excluded).
    """
    prefix = '{"workflow_run_id":' + json.dumps(run_id) + ","
    metrics = current_runtime().metrics
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
                yield sse.encode(data, event=item.event, id=item.id)
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
    service = _service()
    tenant = tenant_id()
    started = service.start(tenant, body.app_id, user=body.user, inputs=body.inputs)
    if body.response_mode == "blocking":
        result, _ = service.wait(tenant, started.run_id, body.user)
        return respond(BlockingRun(workflow_run_id=started.run_id, data=result))
    events = service.events(tenant, started.run_id, body.user, until=DRAIN.is_set)
    return sse_response(events, started.run_id)


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
def run_events(run_id: str) -> WerkzeugResponse:
    """The run's events as ``text/event-stream``, after ``Last-Event-ID`` when given."""
    query = parse_query(EventsQuery)
    after = request.headers.get("Last-Event-ID") or query.last_event_id
    items = _service().events(tenant_id(), run_id, query.user, after=after, until=DRAIN.is_set)
    return sse_response(items, run_id, resumed=after is not None)


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
