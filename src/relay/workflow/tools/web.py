"""relay's built-in web tools, under the provider ids Dify exports use: ``webscraper``,
``wikipedia``, ``duckduckgo``, ``searxng`` and ``jina``.

None needs a third-party account (Jina accepts an optional API key as a tenant credential).
Every request goes through :func:`relay.workflow.ssrf.guarded_client`, so a tenant's workflow
reaches no loopback or private address unless the operator allows it; base URLs come from
:class:`WebToolsConfig` so that tests point the tools at local servers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, quote, urlparse

import httpx

from relay.workflow.config import HttpRequestConfig, WebToolsConfig
from relay.workflow.errors import NodeError
from relay.workflow.llm.base import FunctionSpec
from relay.workflow.ssrf import guarded_client
from relay.workflow.stop import StopToken
from relay.workflow.tools.base import (
    ToolCall,
    ToolError,
    ToolProvider,
    ToolResult,
    text_parameters,
)

_SKIPPED_TAGS = {"script", "style", "noscript", "template", "svg", "head"}
_BLOCK_TAGS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section",
               "article", "header", "footer", "pre", "blockquote", "table", "ul", "ol"}  # fmt: skip


class _TextExtractor(HTMLParser):
    """Visible text of an HTML page, with its title and line breaks at block elements."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self._in_title = False
        self._skip = 0
        self._parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in _SKIPPED_TAGS:
            self._skip += 1
        elif tag in _BLOCK_TAGS:
            self._parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in _SKIPPED_TAGS and self._skip:
            self._skip -= 1
        elif tag in _BLOCK_TAGS:
            self._parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._skip:
            self._parts.append(data)

    @property
    def text(self) -> str:
        lines = (
            re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in "".join(self._parts).split("\n")
        )
        return "\n".join(line for line in lines if line)


def page_text(html: str) -> tuple[str, str]:
    """``(title, visible text)`` of an HTML document."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    return parser.title.strip(), parser.text


class _WebTool:
    """Shared plumbing: a guarded GET that honours stop, a size cap and clear errors."""

    provider_id = ""
    tools: tuple[str, ...] = ()

    def __init__(self, config: WebToolsConfig, http: HttpRequestConfig) -> None:
        self._config = config
        self._http = http

    specs: tuple[FunctionSpec, ...] = ()

    def tool_names(self) -> Sequence[str]:
        return self.tools

    def describe(self, tool_name: str) -> FunctionSpec | None:
        return next((spec for spec in self.specs if spec.name == tool_name), None)

    def _check(self, call: ToolCall) -> dict[str, Any]:
        if call.tool_name not in self.tools:
            raise ToolError(
                f"tool provider '{self.provider_id}' has no tool '{call.tool_name}' "
                f"(it offers: {', '.join(self.tools)})"
            )
        return {**call.configurations, **call.parameters}

    def _get(
        self,
        url: str,
        stop: StopToken,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        method: str = "GET",
        data: Mapping[str, Any] | None = None,
    ) -> httpx.Response:
        stop.raise_if_set()
        if not url.startswith(("http://", "https://")):
            raise ToolError(f"{self.provider_id}: URL must start with http:// or https://: {url!r}")
        try:
            with guarded_client(self._http) as client:
                response = client.request(
                    method, url, params=dict(params or {}), headers=dict(headers or {}),
                    data=dict(data) if data is not None else None,
                )  # fmt: skip
        except NodeError as exc:  # the address guard
            raise ToolError(f"{self.provider_id}: {exc.message}") from exc
        except httpx.HTTPError as exc:
            raise ToolError(f"{self.provider_id}: request to {url} failed: {exc}") from exc
        stop.raise_if_set()
        if len(response.content) > self._http.max_response_bytes:
            raise ToolError(f"{self.provider_id}: response from {url} is too large")
        if response.status_code >= 400:
            raise ToolError(
                f"{self.provider_id}: {url} answered HTTP {response.status_code}: "
                f"{response.text[:200]}"
            )
        return response

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise ToolError(
                f"{self.provider_id}: {response.url} did not answer JSON: {response.text[:200]!r}"
            ) from exc

    def _cap(self, text: str) -> str:
        return text[: self._config.max_text_chars]


class WebscraperProvider(_WebTool):
    """Dify's ``webscraper``: the title and visible text of a page."""

    provider_id = "webscraper"
    tools = ("webscraper",)
    specs = (text_parameters("The title and visible text of a web page.", "webscraper",
                             ("url", "the page's http(s) URL", True),
                             ("user_agent", "User-Agent header to send", False)),)  # fmt: skip

    def invoke(self, call: ToolCall, stop: StopToken) -> ToolResult:
        values = self._check(call)
        url = str(values.get("url") or "").strip()
        agent = str(values.get("user_agent") or self._config.user_agent)
        response = self._get(url, stop, headers={"User-Agent": agent})
        if "html" in response.headers.get("content-type", "html"):
            title, text = page_text(response.text)
        else:
            title, text = "", response.text
        body = f"TITLE: {title}\n\n{text}" if title else text
        return ToolResult(text=self._cap(body), json=[{"url": url, "title": title}])


class WikipediaProvider(_WebTool):
    """Dify's ``wikipedia`` provider: ``wikipedia_search`` returns the intros of the best pages."""

    provider_id = "wikipedia"
    tools = ("wikipedia_search",)
    specs = (text_parameters("Search Wikipedia; returns the intros of the best pages.",
                             "wikipedia_search", ("query", "what to look up", True),
                             ("language", "language code, e.g. en", False)),)  # fmt: skip

    def invoke(self, call: ToolCall, stop: StopToken) -> ToolResult:
        values = self._check(call)
        query = str(values.get("query") or "").strip()
        if not query:
            raise ToolError("wikipedia_search needs a query")
        language = re.sub(r"[^a-z-]", "", str(values.get("language") or "en").lower()) or "en"
        api = self._config.wikipedia_url.format(language=language).rstrip("/") + "/w/api.php"
        found = self._json(
            self._get(api, stop, params={"action": "query", "list": "search", "srsearch": query,
                                         "srlimit": 3, "format": "json"})
        )  # fmt: skip
        titles = [str(hit.get("title")) for hit in (found.get("query") or {}).get("search") or []]
        if not titles:
            return ToolResult(text=f"No Wikipedia page matches {query!r}.")
        pages = self._json(
            self._get(api, stop, params={"action": "query", "prop": "extracts", "exintro": 1,
                                         "explaintext": 1, "redirects": 1, "format": "json",
                                         "titles": "|".join(titles)})
        )  # fmt: skip
        extracts = {
            str(page.get("title")): str(page.get("extract") or "")
            for page in ((pages.get("query") or {}).get("pages") or {}).values()
        }
        results = [{"title": t, "summary": extracts.get(t, "")} for t in titles]
        text = "\n\n".join(f"Page: {r['title']}\nSummary: {r['summary']}" for r in results)
        return ToolResult(text=self._cap(text), json=results)


class _DuckDuckGoResults(HTMLParser):
    """Results of DuckDuckGo's HTML page: ``a.result__a`` links and ``.result__snippet`` text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.results: list[dict[str, str]] = []
        self._field: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        if tag == "a" and "result__a" in classes:
            self.results.append({"title": "", "href": _ddg_target(attributes.get("href") or ""),
                                 "body": ""})  # fmt: skip
            self._field = "title"
        elif "result__snippet" in classes and self.results:
            self._field = "body"

    def handle_endtag(self, tag: str) -> None:
        if tag in ("a", "td", "div"):
            self._field = None

    def handle_data(self, data: str) -> None:
        if self._field and self.results:
            self.results[-1][self._field] += data


def _ddg_target(href: str) -> str:
    """DuckDuckGo wraps result links as ``/l/?uddg=<target>``."""
    parsed = urlparse(href)
    target = parse_qs(parsed.query).get("uddg")
    return target[0] if target else href


class DuckDuckGoProvider(_WebTool):
    """Dify's ``duckduckgo`` provider: ``ddgo_search`` over DuckDuckGo's HTML results."""

    provider_id = "duckduckgo"
    tools = ("ddgo_search",)
    specs = (text_parameters("Search the web with DuckDuckGo.", "ddgo_search",
                             ("query", "search terms", True),
                             ("max_results", "how many results (1-20)", False),
                             max_results="integer"),)  # fmt: skip

    def invoke(self, call: ToolCall, stop: StopToken) -> ToolResult:
        values = self._check(call)
        query = str(values.get("query") or "").strip()
        if not query:
            raise ToolError("ddgo_search needs a query")
        limit = max(1, min(int(values.get("max_results") or 5), 20))
        response = self._get(self._config.duckduckgo_url, stop, method="POST", data={"q": query},
                             headers={"User-Agent": self._config.user_agent})  # fmt: skip
        parser = _DuckDuckGoResults()
        parser.feed(response.text)
        results = [{k: v.strip() for k, v in r.items()} for r in parser.results[:limit]]
        text = "\n\n".join(f"{r['title']}\n{r['href']}\n{r['body']}" for r in results)
        return ToolResult(text=self._cap(text) or f"No results for {query!r}.", json=results)


class SearXNGProvider(_WebTool):
    """Dify's ``searxng`` provider: ``searxng_search`` through an instance's JSON API; the
    instance is the tenant's ``searxng_base_url`` credential or the configured one."""

    provider_id = "searxng"
    tools = ("searxng_search",)
    specs = (text_parameters("Search the web through a SearXNG instance.", "searxng_search",
                             ("query", "search terms", True),
                             ("search_type", "general, news, it...", False)),)  # fmt: skip

    def invoke(self, call: ToolCall, stop: StopToken) -> ToolResult:
        values = self._check(call)
        query = str(values.get("query") or "").strip()
        if not query:
            raise ToolError("searxng_search needs a query")
        base = call.credentials.get("searxng_base_url") or self._config.searxng_url
        if not base:
            raise ToolError(
                "searxng_search needs a SearXNG instance: set the tenant's searxng credential "
                "'searxng_base_url' or RELAY_WORKFLOW_TOOLS_SEARXNG_URL"
            )
        category = str(values.get("search_type") or "general")
        found = self._json(
            self._get(base.rstrip("/") + "/search", stop,
                      params={"q": query, "format": "json", "categories": category})
        )  # fmt: skip
        results = [
            {"title": str(r.get("title") or ""), "url": str(r.get("url") or ""),
             "content": str(r.get("content") or "")}
            for r in (found.get("results") or [])[:10]
        ]  # fmt: skip
        text = "\n\n".join(f"{r['title']}\n{r['url']}\n{r['content']}" for r in results)
        return ToolResult(text=self._cap(text) or f"No results for {query!r}.", json=results)


class JinaProvider(_WebTool):
    """Dify's ``jina`` provider: ``jina_reader`` (a page as Markdown) and ``jina_search``."""

    provider_id = "jina"
    tools = ("jina_reader", "jina_search")
    specs = (
        text_parameters("A web page as Markdown (Jina Reader).", "jina_reader",
                        ("url", "the page's URL", True)),
        text_parameters("Search the web with Jina Search.", "jina_search",
                        ("query", "search terms", True)),
    )  # fmt: skip

    def invoke(self, call: ToolCall, stop: StopToken) -> ToolResult:
        values = self._check(call)
        headers = {"Accept": "application/json"}
        key = call.credentials.get("api_key")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        if call.tool_name == "jina_reader":
            url = str(values.get("url") or "").strip()
            if not url:
                raise ToolError("jina_reader needs a url")
            target = self._config.jina_reader_url.rstrip("/") + "/" + url
        else:
            query = str(values.get("query") or "").strip()
            if not query:
                raise ToolError("jina_search needs a query")
            target = self._config.jina_search_url.rstrip("/") + "/" + quote(query)
        response = self._get(target, stop, headers=headers)
        try:
            payload = response.json()
        except ValueError:
            return ToolResult(text=self._cap(response.text))
        data = payload.get("data") if isinstance(payload, dict) else None
        if isinstance(data, dict):
            return ToolResult(text=self._cap(str(data.get("content") or "")), json=[data])
        if isinstance(data, list):
            text = "\n\n".join(
                f"{d.get('title', '')}\n{d.get('url', '')}\n{d.get('content', '')}"
                for d in data if isinstance(d, dict)
            )  # fmt: skip
            return ToolResult(text=self._cap(text), json=list(data))
        return ToolResult(text=self._cap(json.dumps(payload, ensure_ascii=False)), json=[payload])


def web_providers(
    config: WebToolsConfig | None = None, http: HttpRequestConfig | None = None
) -> list[ToolProvider]:
    """Every built-in web tool provider with these settings."""
    web, guard = config or WebToolsConfig(), http or HttpRequestConfig()
    return [
        WebscraperProvider(web, guard),
        WikipediaProvider(web, guard),
        DuckDuckGoProvider(web, guard),
        SearXNGProvider(web, guard),
        JinaProvider(web, guard),
    ]
