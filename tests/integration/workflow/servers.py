"""Small HTTP servers on 127.0.0.1 for the http-request node and the OpenAI-compatible provider."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlparse

WEATHER = {
    "code": 0,
    "msg": "success",
    "data": {
        "beginYear": 1991,
        "endYear": 2020,
        "data": [
            {"month": m, "maxTemp": 8.0 + m, "minTemp": 1.0 + m / 2, "rainfall": 40.0 + 10 * m}
            for m in range(1, 13)
        ],
    },
}


class LocalServer:
    """A threading HTTP server on an ephemeral loopback port, stopped on exit."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.httpd.state = self  # type: ignore[attr-defined]
        self.lock = threading.Lock()
        self.hits: dict[str, int] = {}
        self.requests: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        port = self.httpd.server_address[1]
        return f"http://127.0.0.1:{port}"

    def __enter__(self) -> LocalServer:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    @property
    def state(self) -> Any:
        return self.server.state  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data, ensure_ascii=False).encode(), "application/json")


class ApiHandler(_Handler):
    """``/api/climate`` (weather JSON), ``/echo``, ``/flaky/<key>`` (500, 500, then 200)."""

    protocol_version = "HTTP/1.1"

    def _route(self) -> None:
        url = urlparse(self.path)
        body = self._body()
        if url.path == "/api/climate":
            self._json(200, WEATHER)
        elif url.path == "/echo":
            self._json(
                200,
                {
                    "method": self.command,
                    "query": parse_qs(url.query),
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body.decode(),
                },
            )
        elif url.path.startswith("/flaky/"):
            with self.state.lock:
                hits = self.state.hits[url.path] = self.state.hits.get(url.path, 0) + 1
            if hits <= 2:
                self._send(500, f"failure {hits}".encode(), "text/plain")
            else:
                self._send(200, b"recovered", "text/plain", X_Attempt=str(hits))
        elif url.path == "/redirect":
            target = parse_qs(url.query)["to"][0]
            self._send(302, b"", "text/plain", Location=target)
        else:
            self._send(404, b"not found", "text/plain")

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _route


Reply = Callable[[list[dict[str, str]]], str]


class OpenAIHandler(_Handler):
    """``POST /v1/chat/completions`` streaming Server-Sent Events like the OpenAI API.

    The server's state may set ``reply`` (messages -> text), ``api_key``, ``status`` (to fail),
    ``hold_after`` (tokens sent before waiting for ``release``), ``with_usage``.
    """

    protocol_version = "HTTP/1.0"  # the stream ends when the connection closes

    def do_POST(self) -> None:
        state = self.state
        request = json.loads(self._body())
        with state.lock:
            state.requests.append({"json": request, "auth": self.headers.get("Authorization")})
        if self.headers.get("Authorization") != f"Bearer {state.api_key}":
            self._json(401, {"error": {"message": "bad key"}})
            return
        if state.status != 200:
            self._json(state.status, {"error": {"message": "overloaded"}})
            return
        text = state.reply(request["messages"])
        tokens = [text[i : i + 4] for i in range(0, len(text), 4)]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for i, token in enumerate(tokens):
            if i == state.hold_after:
                state.release.wait(timeout=10)
            chunk = {
                "id": "c1",
                "object": "chat.completion.chunk",
                "model": request["model"],
                "choices": [{"index": 0, "delta": {"content": token}, "finish_reason": None}],
            }
            self._event(chunk)
        self._event({"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if state.with_usage:
            self._event(
                {
                    "id": "c1",
                    "choices": [],
                    "usage": {
                        "prompt_tokens": 11,
                        "completion_tokens": len(tokens),
                        "total_tokens": 11 + len(tokens),
                    },
                }
            )
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    def _event(self, data: dict[str, Any]) -> None:
        try:
            self.wfile.write(f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode())
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass


class OpenAIServer(LocalServer):
    """An OpenAI-compatible streaming endpoint at ``{url}/v1``."""

    def __init__(self, reply: Reply | None = None) -> None:
        super().__init__(OpenAIHandler)
        self.reply: Reply = reply or (lambda messages: "echo: " + messages[-1]["content"])
        self.api_key = "test-key"
        self.status = 200
        self.hold_after: int | None = None
        self.release = threading.Event()
        self.with_usage = True

    @property
    def base_url(self) -> str:
        return self.url + "/v1"
