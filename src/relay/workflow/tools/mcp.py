"""MCP servers as tool providers, over the Streamable HTTP transport.

A tenant sets a server up (``config.server_url``; credentials become request headers: an
``api_key`` is sent as ``Authorization: Bearer``, any ``header:<Name>`` as that header). Each call
opens a session (``initialize``, ``notifications/initialized``), lists or calls tools with
JSON-RPC over POST, and ends the session with DELETE. Responses may come as one JSON body or as
a Server-Sent Events stream carrying the JSON-RPC response; both are read. Every request goes
through the same address guard as the http-request node.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from relay.workflow.config import HttpRequestConfig
from relay.workflow.errors import NodeError
from relay.workflow.llm.base import FunctionSpec
from relay.workflow.ssrf import guarded_client
from relay.workflow.stop import StopToken
from relay.workflow.tools.base import (
    TenantProviderBuilder,
    TenantToolProvider,
    ToolCall,
    ToolError,
    ToolResult,
)

PROTOCOL_VERSION = "2025-06-18"
_SESSION = "Mcp-Session-Id"


class MCPProvider:
    """The tools of one MCP server a tenant set up."""

    def __init__(self, stored: TenantToolProvider, http: HttpRequestConfig) -> None:
        self.provider_id = stored.provider_id
        url = str(stored.config.get("server_url") or "")
        if not url.startswith(("http://", "https://")):
            raise ToolError(f"MCP provider '{stored.provider_id}' has no http(s) server_url")
        self._url = url
        self._http = http
        self._headers = _headers(stored.credentials)
        self._tools: list[dict[str, Any]] | None = None

    def tool_names(self) -> Sequence[str]:
        return [str(t.get("name")) for t in self._list()]

    def describe(self, tool_name: str) -> FunctionSpec | None:
        for tool in self._list():
            if tool.get("name") == tool_name:
                schema = tool.get("inputSchema") or {"type": "object", "properties": {}}
                return FunctionSpec(tool_name, str(tool.get("description") or ""), dict(schema))
        return None

    def invoke(self, call: ToolCall, stop: StopToken) -> ToolResult:
        arguments = {**call.configurations, **call.parameters}
        with _Session(self._url, self._http, self._headers, self.provider_id, stop) as session:
            result = session.request("tools/call", {"name": call.tool_name, "arguments": arguments})
        return _result(self.provider_id, call.tool_name, result)

    def _list(self) -> list[dict[str, Any]]:
        if self._tools is None:
            with _Session(self._url, self._http, self._headers, self.provider_id,
                          StopToken()) as session:  # fmt: skip
                listed = session.request("tools/list", {})
            tools = listed.get("tools")
            self._tools = (
                [t for t in tools if isinstance(t, dict)] if isinstance(tools, list) else []
            )
        return self._tools


def mcp_builder(http: HttpRequestConfig) -> TenantProviderBuilder:
    """The builder ``ToolProviders`` uses for tenants' ``mcp`` providers."""

    def build(stored: TenantToolProvider) -> MCPProvider:
        return MCPProvider(stored, http)

    return build


def _headers(credentials: Mapping[str, str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for key, value in credentials.items():
        if key == "api_key" and value:
            headers["Authorization"] = f"Bearer {value}"
        elif key.startswith("header:") and value:
            headers[key.removeprefix("header:")] = value
    return headers


class _Session:
    """One MCP session over Streamable HTTP."""

    def __init__(
        self,
        url: str,
        http: HttpRequestConfig,
        headers: Mapping[str, str],
        provider: str,
        stop: StopToken,
    ) -> None:
        self._url = url
        self._provider = provider
        self._stop = stop
        self._client = guarded_client(http)
        self._headers = {
            **headers,
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": PROTOCOL_VERSION,
        }
        self._ids = itertools.count(1)

    def __enter__(self) -> _Session:
        try:
            self.request("initialize", {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "relay", "version": "1"},
            })  # fmt: skip
            self._post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        except BaseException:
            self._client.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if _SESSION in self._headers:
                self._client.delete(self._url, headers=self._headers)
        except (httpx.HTTPError, NodeError):
            pass  # the server forgets idle sessions anyway
        finally:
            self._client.close()

    def request(self, method: str, params: Mapping[str, Any]) -> dict[str, Any]:
        request_id = next(self._ids)
        message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": dict(params)}
        response = self._post(message)
        if response is None:
            raise ToolError(f"MCP server '{self._provider}' did not answer {method}")
        if response.get("error"):
            error = response["error"]
            text = error.get("message") if isinstance(error, dict) else error
            raise ToolError(f"MCP server '{self._provider}' refused {method}: {text}")
        result = response.get("result")
        return result if isinstance(result, dict) else {}

    def _post(self, message: Mapping[str, Any]) -> dict[str, Any] | None:
        self._stop.raise_if_set()
        try:
            with self._client.stream("POST", self._url, json=dict(message),
                                     headers=self._headers) as response:  # fmt: skip
                if response.status_code >= 400:
                    body = response.read()[:200].decode(errors="replace")
                    raise ToolError(
                        f"MCP server '{self._provider}' answered HTTP {response.status_code}: "
                        f"{body}"
                    )
                session = response.headers.get(_SESSION)
                if session:
                    self._headers[_SESSION] = session
                if "id" not in message:
                    return None
                kind = response.headers.get("content-type", "")
                if kind.startswith("text/event-stream"):
                    return self._from_events(response, message["id"])
                return _decode(response.read(), self._provider)
        except NodeError as exc:
            if isinstance(exc, ToolError):
                raise
            raise ToolError(f"MCP server '{self._provider}': {exc.message}") from exc
        except httpx.HTTPError as exc:
            raise ToolError(f"MCP server '{self._provider}' failed: {exc}") from exc

    def _from_events(self, response: httpx.Response, request_id: Any) -> dict[str, Any] | None:
        data: list[str] = []
        for line in response.iter_lines():
            self._stop.raise_if_set()
            if line.startswith("data:"):
                data.append(line[5:].strip())
            elif not line and data:
                found = _decode("\n".join(data).encode(), self._provider)
                data = []
                if found.get("id") == request_id:
                    return found
        return _decode("\n".join(data).encode(), self._provider) if data else None


def _decode(body: bytes, provider: str) -> dict[str, Any]:
    try:
        found = json.loads(body)
    except ValueError as exc:
        raise ToolError(f"MCP server '{provider}' sent malformed JSON: {body[:200]!r}") from exc
    if not isinstance(found, dict):
        raise ToolError(f"MCP server '{provider}' sent {type(found).__name__}, not a message")
    return found


def _result(provider: str, tool: str, result: Mapping[str, Any]) -> ToolResult:
    texts: list[str] = []
    files: list[dict[str, Any]] = []
    for item in result.get("content") or []:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "text":
            texts.append(str(item.get("text") or ""))
        elif item.get("type") in ("image", "audio"):
            files.append({"type": item["type"], "mime_type": item.get("mimeType"),
                          "data": item.get("data")})  # fmt: skip
    text = "\n".join(texts)
    if result.get("isError"):
        raise ToolError(f"MCP tool '{tool}' of '{provider}' failed: {text or 'no message'}")
    structured = result.get("structuredContent")
    return ToolResult(
        text=text,
        json=[structured] if isinstance(structured, dict) else [],
        files=files,
    )
