"""The http-request node against a server on 127.0.0.1."""

from __future__ import annotations

import json
import uuid
from typing import Any

from relay.workflow import (
    GraphRunFailedEvent,
    GraphRunPartialSucceededEvent,
    GraphRunSucceededEvent,
    HttpRequestConfig,
    NodeRunRetryEvent,
)
from relay.workflow.events import GraphEngineEvent
from tests.unit.workflow.helpers import (
    build,
    edge,
    end,
    make_engine,
    node,
    offline_services,
    start,
    trace,
)

from .servers import LocalServer

LOOPBACK_OK = HttpRequestConfig(allow_private_addresses=True)


def _run(
    data: dict[str, Any],
    config: HttpRequestConfig = LOOPBACK_OK,
    inputs: dict[str, Any] | None = None,
) -> list[GraphEngineEvent]:
    graph = build(
        [
            start("who"),
            node("http", "http-request", **data),
            end(status=["http", "status_code"], body=["http", "body"]),
        ],
        [edge("start", "http"), edge("http", "end")],
    )
    return list(
        make_engine(graph, inputs or {"who": "ada"}, services=offline_services(http=config)).run()
    )


def final_outputs(events: list[GraphEngineEvent]) -> dict[str, Any]:
    final = events[-1]
    assert isinstance(final, GraphRunSucceededEvent)
    return final.outputs


def test_get_with_params_headers_and_api_key(api_server: LocalServer) -> None:
    events = _run(
        {
            "method": "get",
            "url": f"{api_server.url}/echo",
            "params": "name:{{#start.who#}}\nlimit:3",
            "headers": "X-Trace:abc",
            "authorization": {"type": "api-key", "config": {"type": "bearer", "api_key": "k1"}},
        }
    )
    final = events[-1]
    assert isinstance(final, GraphRunSucceededEvent)
    echoed = json.loads(final.outputs["body"])
    assert final.outputs["status"] == 200
    assert echoed["method"] == "GET"
    assert echoed["query"] == {"name": ["ada"], "limit": ["3"]}
    assert echoed["headers"]["x-trace"] == "abc"
    assert echoed["headers"]["authorization"] == "Bearer k1"


def test_post_json_and_form_bodies(api_server: LocalServer) -> None:
    events = _run(
        {
            "method": "post",
            "url": f"{api_server.url}/echo",
            "body": {
                "type": "json",
                "data": [{"type": "text", "value": '{"who": "{{#start.who#}}"}'}],
            },
        }
    )
    echoed = json.loads(final_outputs(events)["body"])
    assert json.loads(echoed["body"]) == {"who": "ada"}
    assert echoed["headers"]["content-type"] == "application/json"
    events = _run(
        {
            "method": "post",
            "url": f"{api_server.url}/echo",
            "body": {
                "type": "x-www-form-urlencoded",
                "data": [{"key": "a", "type": "text", "value": "{{#start.who#}}"}],
            },
        }
    )
    assert json.loads(final_outputs(events)["body"])["body"] == "a=ada"


def test_retry_on_server_errors_gives_two_retry_events(api_server: LocalServer) -> None:
    events = _run(
        {
            "method": "get",
            "url": f"{api_server.url}/flaky/{uuid.uuid4()}",
            "retry_config": {"retry_enabled": True, "max_retries": 3, "retry_interval": 5},
        }
    )
    assert trace(events) == [
        "GraphRunStarted",
        "NodeRunStarted start",
        "NodeRunSucceeded start",
        "NodeRunStarted http",
        "NodeRunRetry http 1",
        "NodeRunRetry http 2",
        "NodeRunSucceeded http",
        "NodeRunStarted end",
        "NodeRunSucceeded end",
        "GraphRunSucceeded",
    ]
    assert final_outputs(events) == {"status": 200, "body": "recovered"}
    retry = events[4]
    assert isinstance(retry, NodeRunRetryEvent)
    assert retry.error.startswith("HTTP 500 from http://127.0.0.1:")


def test_error_status_without_retry_or_strategy_is_an_output(api_server: LocalServer) -> None:
    events = _run({"method": "get", "url": f"{api_server.url}/missing"})
    assert events[-1] == GraphRunSucceededEvent(outputs={"status": 404, "body": "not found"})


def test_error_status_with_default_value_strategy(api_server: LocalServer) -> None:
    events = _run(
        {
            "method": "get",
            "url": f"{api_server.url}/flaky/{uuid.uuid4()}",
            "error_strategy": "default-value",
            "default_value": [
                {"key": "body", "type": "string", "value": "n/a"},
                {"key": "status_code", "type": "number", "value": 0},
            ],
        }
    )
    assert events[-1] == GraphRunPartialSucceededEvent(
        exceptions_count=1, outputs={"status": 0, "body": "n/a"}
    )


def test_loopback_is_refused_by_default(api_server: LocalServer) -> None:
    events = _run({"method": "get", "url": f"{api_server.url}/echo"}, HttpRequestConfig())
    final = events[-1]
    assert isinstance(final, GraphRunFailedEvent)
    assert final.error == (
        "refusing to call 127.0.0.1 (127.0.0.1): private, loopback and link-local addresses "
        "are not allowed"
    )
