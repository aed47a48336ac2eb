"""API tools from an OpenAPI 3 schema a tenant stored (Dify's ``api`` provider type).

Each operation with an ``operationId`` is a tool of that name. Its path, query and header
parameters and the properties of a JSON request body are the tool's parameters; the server is
the schema's first ``servers`` URL. Credentials become headers: ``api_key`` as
``Authorization: Bearer`` (or under the header named by the ``api_key_header`` credential),
any ``header:<Name>`` as that header. Requests go through the http-request node's address guard.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import yaml

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

_METHODS = ("get", "post", "put", "patch", "delete")


@dataclass(frozen=True)
class Operation:
    """One operation of the schema, as a tool."""

    name: str
    method: str
    path: str
    description: str
    parameters: tuple[Mapping[str, Any], ...]
    body: Mapping[str, Any] | None  # JSON schema of the request body


def parse_schema(source: Any) -> tuple[str, dict[str, Operation]]:
    """``(server URL, operations by name)`` of an OpenAPI document (a mapping, JSON or YAML);
    ToolError says what is wrong."""
    document = source
    if isinstance(source, str):
        try:
            document = yaml.safe_load(source)
        except yaml.YAMLError as exc:
            raise ToolError(f"the OpenAPI schema is not valid JSON or YAML: {exc}") from None
    if not isinstance(document, Mapping) or not isinstance(document.get("paths"), Mapping):
        raise ToolError("the OpenAPI schema needs a 'paths' mapping")
    servers = document.get("servers") or []
    server = servers[0].get("url") if servers and isinstance(servers[0], Mapping) else None
    if not isinstance(server, str) or not server.startswith(("http://", "https://")):
        raise ToolError("the OpenAPI schema needs an http(s) URL in servers[0].url")
    operations: dict[str, Operation] = {}
    for path, item in document["paths"].items():
        if not isinstance(item, Mapping):
            continue
        shared = list(item.get("parameters") or [])
        for method in _METHODS:
            op = item.get(method)
            if not isinstance(op, Mapping) or not op.get("operationId"):
                continue
            body = (((op.get("requestBody") or {}).get("content") or {})
                    .get("application/json") or {}).get("schema")  # fmt: skip
            name = str(op["operationId"])
            operations[name] = Operation(
                name=name, method=method.upper(), path=str(path),
                description=str(op.get("description") or op.get("summary") or name),
                parameters=tuple(p for p in [*shared, *(op.get("parameters") or [])]
                                 if isinstance(p, Mapping) and p.get("name")),
                body=body if isinstance(body, Mapping) else None,
            )  # fmt: skip
    if not operations:
        raise ToolError("the OpenAPI schema has no operation with an operationId")
    return server.rstrip("/"), operations


class OpenAPIProvider:
    """The operations of one tenant's OpenAPI schema."""

    def __init__(self, stored: TenantToolProvider, http: HttpRequestConfig) -> None:
        self.provider_id = stored.provider_id
        self._server, self._operations = parse_schema(stored.config.get("schema"))
        self._http = http

    def tool_names(self) -> Sequence[str]:
        return list(self._operations)

    def describe(self, tool_name: str) -> FunctionSpec | None:
        op = self._operations.get(tool_name)
        if op is None:
            return None
        properties: dict[str, Any] = {}
        required: list[str] = []
        for parameter in op.parameters:
            name = str(parameter["name"])
            schema = dict(parameter.get("schema") or {"type": "string"})
            schema.setdefault("description", str(parameter.get("description") or ""))
            properties[name] = schema
            if parameter.get("required"):
                required.append(name)
        if op.body is not None:
            properties.update(dict(op.body.get("properties") or {}))
            required.extend(str(n) for n in op.body.get("required") or [])
        parameters = {"type": "object", "properties": properties, "required": required}
        return FunctionSpec(tool_name, op.description, parameters)

    def invoke(self, call: ToolCall, stop: StopToken) -> ToolResult:
        op = self._operations.get(call.tool_name)
        if op is None:
            raise ToolError(
                f"API provider '{self.provider_id}' has no operation '{call.tool_name}' "
                f"(it offers: {', '.join(self._operations)})"
            )
        values = {**call.configurations, **call.parameters}
        path, query, headers = op.path, {}, _headers(call.credentials)
        for parameter in op.parameters:
            name, where = str(parameter["name"]), parameter.get("in")
            if name not in values or values[name] is None:
                if parameter.get("required"):
                    raise ToolError(f"{call.tool_name}: parameter '{name}' is required")
                continue
            value = values.pop(name)
            if where == "path":
                path = path.replace("{" + name + "}", quote(str(value), safe=""))
            elif where == "header":
                headers[name] = str(value)
            else:
                query[name] = value
        body = values if op.body is not None else None
        stop.raise_if_set()
        try:
            with guarded_client(self._http) as client:
                response = client.request(op.method, self._server + path, params=query,
                                          headers=headers, json=body)  # fmt: skip
        except NodeError as exc:
            raise ToolError(f"API provider '{self.provider_id}': {exc.message}") from exc
        except httpx.HTTPError as exc:
            raise ToolError(f"API provider '{self.provider_id}' failed: {exc}") from exc
        if response.status_code >= 400:
            raise ToolError(
                f"{call.tool_name}: HTTP {response.status_code} from {self.provider_id}: "
                f"{response.text[:200]}"
            )
        try:
            data = response.json()
        except ValueError:
            return ToolResult(text=response.text)
        return ToolResult(text=json.dumps(data, ensure_ascii=False), json=[data])


def openapi_builder(http: HttpRequestConfig) -> TenantProviderBuilder:
    """The builder ``ToolProviders`` uses for tenants' ``api`` providers."""

    def build(stored: TenantToolProvider) -> OpenAPIProvider:
        return OpenAPIProvider(stored, http)

    return build


def _headers(credentials: Mapping[str, str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    key = credentials.get("api_key")
    if key:
        header = credentials.get("api_key_header")
        headers[header or "Authorization"] = key if header else f"Bearer {key}"
    for name, value in credentials.items():
        if name.startswith("header:") and value:
            headers[name.removeprefix("header:")] = value
    return headers
