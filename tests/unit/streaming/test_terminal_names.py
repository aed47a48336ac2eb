"""A failed run's terminal event is ``run_error`` on the wire unless Dify's names are asked for."""

from __future__ import annotations

from flask import Flask

from relay.adapters.prometheus import Metrics
from relay.api.workflows import sse_response
from relay.streaming import StreamItem
from relay.streaming.sse import SSEParser


def _names(mode: str) -> list[str]:
    items = [
        StreamItem("1-0", "workflow_started", '{"event":"workflow_started"}'),
        StreamItem("2-0", "error", '{"event":"error","message":"boom"}', final=True),
    ]
    with Flask(__name__).test_request_context():
        response = sse_response(iter(items), "run-1", mode, metrics=Metrics())  # type: ignore[arg-type]
        body = b"".join(response.response).decode()  # type: ignore[arg-type]
    return [message.event for message in SSEParser().feed(body)]


def test_failed_runs_end_with_run_error_unless_dify_names_are_asked_for() -> None:
    assert _names("relay") == ["workflow_started", "run_error"]
    assert _names("dify") == ["workflow_started", "error"]
