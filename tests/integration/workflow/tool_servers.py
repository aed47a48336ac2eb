"""A loopback server standing in for the sites relay's built-in web tools call: a web page,
MediaWiki's API, DuckDuckGo's HTML results, a SearXNG instance and Jina Reader/Search."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, quote, unquote, urlparse

from .servers import LocalServer, _Handler

PAGE = """<!doctype html><html><head><title>Relay notes</title>
<style>body { color: red }</style><script>var secret = "not text";</script></head>
<body><h1>Relay</h1><p>Relay runs Dify workflows.</p><ul><li>fair queues</li><li>SSE</li></ul>
</body></html>"""


class WebToolsHandler(_Handler):
    """Routes: ``/page``, ``/w/api.php``, ``POST /html/``, ``/search``, ``/r/<url>``,
    ``/s/<query>``. Every request is recorded in the server's ``requests``."""

    protocol_version = "HTTP/1.1"

    def _route(self) -> None:
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        body = self._body().decode()
        with self.state.lock:
            self.state.requests.append({
                "method": self.command, "path": url.path, "query": query, "body": body,
                "auth": self.headers.get("Authorization"), "agent": self.headers.get("User-Agent"),
            })  # fmt: skip
        if url.path == "/page":
            self._send(200, PAGE.encode(), "text/html; charset=utf-8")
        elif url.path == "/w/api.php" and query.get("list") == "search":
            self._json(200, {"query": {"search": [{"title": "Relay (software)"},
                                                  {"title": "Relay"}]}})  # fmt: skip
        elif url.path == "/w/api.php" and query.get("prop") == "extracts":
            runner = f"A workflow runner ({query['titles']})."
            self._json(200, {"query": {"pages": {
                "1": {"title": "Relay (software)", "extract": runner},
                "2": {"title": "Relay", "extract": "An electrically operated switch."},
            }}})  # fmt: skip
        elif url.path == "/html/" and self.command == "POST":
            q = parse_qs(body).get("q", [""])[0]
            results = "".join(
                f'<div class="result"><a class="result__a" href="//duckduckgo.com/l/?uddg='
                f'{quote(f"https://example.org/{i}")}&amp;rut=x">{q} result {i}</a>'
                f'<a class="result__snippet" href="#">About <b>{q}</b> number {i}</a></div>'
                for i in range(1, 4)
            )
            self._send(200, f"<html><body>{results}</body></html>".encode(), "text/html")
        elif url.path == "/search" and query.get("format") == "json":
            self._json(200, {"query": query["q"], "results": [
                {"title": f"{query['q']} on SearXNG", "url": "https://example.org/s",
                 "content": f"category {query.get('categories')}"},
            ]})  # fmt: skip
        elif url.path.startswith("/r/"):
            target = self.path[3:]
            data = {"title": "Read", "url": target, "content": f"# Markdown of {target}"}
            self._json(200, {"code": 200, "data": data})
        elif url.path.startswith("/s/"):
            q = unquote(url.path[3:])
            self._json(200, {"code": 200, "data": [
                {"title": f"{q} 1", "url": "https://example.org/1", "content": "first"},
            ]})  # fmt: skip
        else:
            self._send(404, b"not found", "text/plain")

    do_GET = do_POST = _route


def web_tools_server() -> LocalServer:
    """A not yet started server (use it as a context manager)."""
    return LocalServer(WebToolsHandler)


def dump(value: object) -> str:
    """JSON for assertion messages."""
    return json.dumps(value, ensure_ascii=False, default=str)
