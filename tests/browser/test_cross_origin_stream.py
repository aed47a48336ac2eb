"""A page on another origin streams a run with a native EventSource, across an API restart.

The API (an app of its own, with the page's origin in ``cors_origins``) serves on a port of its
own; the page gets a stream token from its test and opens ``EventSource(events_url)``. Mid-run
the API is stopped, its open connections cut, and a new app with a new runtime started on the
same port, as a restarted process would be: the browser reconnects with ``Last-Event-ID``,
receives every event of the run exactly once, and after the terminal event the resume answers
204, so the EventSource closes for good.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

from playwright.sync_api import Page
from werkzeug.serving import WSGIRequestHandler, make_server

from relay.app_factory import create_app
from relay.config import Settings
from relay.streaming.channels import START, stream_key
from relay.streaming.queue_events import QueueEvent
from tests.browser.conftest import Site
from tests.integration.streaming.support import workflow_graph
from tests.integration.test_mail_task import free_port

SECRET = "browser-test-secret-key"
REPLY = " ".join(f"w{i}" for i in range(150))
NAMES = [e.value for e in QueueEvent if e is not QueueEvent.ERROR] + ["run_error"]

PAGE = """<!doctype html>
<html><body><ol id="log"></ol>
<script>
window.received = [];
window.ended = false;
window.opens = 0;
const source = new EventSource(%(url)s);
source.onopen = () => { window.opens += 1; };
for (const name of %(names)s) {
  source.addEventListener(name, (e) => { window.received.push([e.lastEventId, name]); });
}
window.errors = [];
source.onerror = () => {
  window.errors.push([Date.now(), source.readyState]);
  if (source.readyState === EventSource.CLOSED) window.ended = true;
};
</script></body></html>
"""


class _Handler(WSGIRequestHandler):
    """Remembers its connection, so a stop can cut every open stream like a crash does."""

    open_sockets: ClassVar[set[socket.socket]] = set()

    def setup(self) -> None:
        super().setup()
        self.open_sockets.add(self.connection)

    def finish(self) -> None:
        self.open_sockets.discard(self.connection)
        super().finish()


@contextmanager
def _api_process(settings: Settings, port: int) -> Iterator[None]:
    """A fresh API (its own app and runtime, as a new process has) on ``port``; on exit it
    stops and cuts every open connection."""
    app = create_app(settings)
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=_Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        for connection in list(_Handler.open_sockets):
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        app.extensions["relay"].close()


@contextmanager
def _page_server(root: Path) -> Iterator[int]:
    handler = partial(SimpleHTTPRequestHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_an_event_source_on_another_origin_streams_a_run_across_an_api_restart(
    page: Page, site: Site, tmp_path: Path
) -> None:
    runtime = site.served.runtime
    runtime.settings = runtime.settings.model_copy(
        update={"workflow": runtime.settings.workflow.model_copy(update={"llm_reply": REPLY})}
    )
    site.served.app.secret_key = SECRET  # tokens issued here are checked by the other API
    app_id = site.publish_app(workflow_graph(llm_nodes=1))
    with _page_server(tmp_path) as page_port:
        api_port = free_port()
        origin = f"http://127.0.0.1:{page_port}"
        api = runtime.settings.api.model_copy(
            update={"secret_key": SECRET, "cors_origins": [origin]}
        )
        settings = runtime.settings.model_copy(update={"api": api})
        api_url = f"http://localhost:{api_port}"  # another origin than the page's
        with _api_process(settings, api_port):
            started = site.api.call(
                "POST",
                "/v1/workflows/run",
                site.tenant,
                json={"app_id": app_id, "inputs": {"topic": "t"}, "user": "u"},
                buffered=False,
            )
            run_id = started.headers["X-Relay-Run-Id"]
            started.close()
            issued = site.api.ok(
                "POST", f"/v1/workflows/runs/{run_id}/stream-token", site.tenant, json={"user": "u"}
            )
            url = json.dumps(api_url + issued["events_url"])
            (tmp_path / "stream.html").write_text(PAGE % {"url": url, "names": json.dumps(NAMES)})
            page.goto(f"{origin}/stream.html")
            page.wait_for_function("window.received.length >= 5", timeout=20_000)
        # The API is down mid-run: the page keeps what it got and retries; start it again.
        before_restart = page.evaluate("window.received.length")
        with _api_process(settings, api_port):
            page.wait_for_function("window.ended", timeout=20_000)
            received = page.evaluate("window.received")
            opens = page.evaluate("window.opens")

    stored = [entry_id for entry_id, _ in runtime.redis.xrange(stream_key(run_id), START, "+")]
    assert [event_id for event_id, _ in received] == [
        (i if isinstance(i, str) else i.decode()) for i in stored
    ]
    assert received[-1][1] == "workflow_succeeded"
    assert opens >= 2  # it did reconnect across the restart
    assert before_restart < len(received)  # and the restart cut the run's stream
