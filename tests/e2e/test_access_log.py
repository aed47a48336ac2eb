"""gunicorn's access and error logs as JSON lines: one line per request with its request id
(``X-Request-Id`` in and out), tenant, method, path without the query string, status, duration
and the request's trace and span ids (tracing on)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from relay.config import Settings
from relay.runtime import Runtime
from tests.e2e.api_server import ADMIN, api_server
from tests.waiting import wait_until


@pytest.fixture
def collector() -> Iterator[str]:
    """An OTLP/HTTP endpoint that accepts (and drops) every export, so exporting never waits."""

    class Sink(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def _json_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for line in text.splitlines():
        if line.strip():
            lines.append(json.loads(line))  # every line the server writes is JSON
    return lines


def test_one_json_access_line_per_request_with_ids(
    runtime: Runtime, settings: Settings, collector: str
) -> None:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    # Spans are recorded and exported (to a sink: only their ids matter here).
    with (
        api_server(
            settings,
            workers=1,
            RELAY_TRACING_ENABLED="true",
            OTEL_EXPORTER_OTLP_ENDPOINT=collector,
        ) as api,
        httpx.Client(base_url=api.url, timeout=30) as client,
    ):
        created = client.post(
            "/v1/tenants", json={"name": "logged", "plan": "sandbox"}, headers=admin
        )
        assert created.status_code == 201, created.text
        tenant_id = created.json()["id"]
        key = client.post(
            f"/v1/tenants/{tenant_id}/api-keys", json={"name": "k"}, headers=admin
        ).json()["key"]
        mine = client.get(
            "/v1/apps?limit=5&token=do-not-log-me",
            headers={"Authorization": f"Bearer {key}", "X-Request-Id": "caller-chosen.id-1"},
        )
        # The query is refused (unknown parameter) after authentication: a tenant's 400.
        assert mine.status_code == 400, mine.text
        assert mine.headers["X-Request-Id"] == "caller-chosen.id-1"
        odd = client.get("/v1/apps", headers={"X-Request-Id": "not ok <script>"})
        assert odd.status_code == 401
        generated = odd.headers["X-Request-Id"]
        assert generated
        assert generated != "not ok <script>"
        missing = client.get("/v1/nowhere")
        assert missing.status_code == 404

        def access() -> list[dict[str, Any]]:
            return [
                line
                for line in _json_lines(api.output())
                if line.get("action") == "http.request" and line["path"] not in ("/health/live",)
            ]

        lines = wait_until(lambda: len(access()) >= 5 and access(), 20, "five access lines")
        output = api.output()

    assert len(lines) == 5, lines  # one per request, no duplicates
    by_path = {(line["method"], line["path"], line["status"]): line for line in lines}
    listed = by_path[("GET", "/v1/apps", 400)]
    assert listed["request_id"] == "caller-chosen.id-1"
    assert listed["tenant_id"] == tenant_id
    assert listed["duration_ms"] > 0
    assert len(listed["trace_id"]) == 32
    assert len(listed["span_id"]) == 16
    assert listed["logger"] == "relay.access"
    assert listed["level"] == "INFO"
    refused = by_path[("GET", "/v1/apps", 401)]
    assert refused["request_id"] == generated
    assert refused["tenant_id"] is None
    assert by_path[("GET", "/v1/nowhere", 404)]["request_id"]
    assert by_path[("POST", "/v1/tenants", 201)]["tenant_id"] is None
    # No query string (and its token) anywhere in the server's output; no key either.
    assert "do-not-log-me" not in output
    assert key not in output
    # gunicorn's own lines (start-up, worker boot) are JSON too.
    assert any("gunicorn" in line["logger"] for line in _json_lines(output))
