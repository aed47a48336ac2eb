"""http-request: calls an HTTP API with httpx; outputs status, body and headers.

Loopback, private and link-local addresses are refused unless
``HttpRequestConfig.allow_private_addresses`` (a tenant's workflow must not reach the
platform's internal network); the check runs for every request, redirects included.
"""

from __future__ import annotations

from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from relay.workflow.config import HttpRequestConfig
from relay.workflow.errors import GraphValidationError, NodeError
from relay.workflow.graph import NodeConfig
from relay.workflow.nodes.base import Node, NodeContext, NodeRun, NodeRunResult, parse_data
from relay.workflow.ssrf import check_address
from relay.workflow.variables import Selector, VariablePool, template_references

_METHODS = {"get", "post", "put", "patch", "delete", "head", "options"}


class AuthConfig(BaseModel):
    """API key placement."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["basic", "bearer", "custom"] = "bearer"
    api_key: str = ""
    header: str = ""


class Authorization(BaseModel):
    """no-auth or an API key."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["no-auth", "api-key"] = "no-auth"
    config: AuthConfig | None = None


class BodyItem(BaseModel):
    """One key/value of a form body, or the text of a raw/json body."""

    model_config = ConfigDict(extra="ignore")

    key: str = ""
    type: str = "text"
    value: str = ""


class Body(BaseModel):
    """Request body; ``data`` is a string in older exports, a list of items in newer ones."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["none", "json", "raw-text", "x-www-form-urlencoded", "form-data", "binary"] = (
        "none"
    )
    data: list[BodyItem] | str | None = None

    def text(self) -> str:
        """The raw text of a json/raw-text body."""
        if isinstance(self.data, str):
            return self.data
        return "".join(item.value for item in self.data or [])


class Timeouts(BaseModel):
    """Seconds; 0 or missing means the configured default."""

    model_config = ConfigDict(extra="ignore")

    connect: float | None = None
    read: float | None = None
    write: float | None = None


class HttpRequestData(BaseModel):
    """http-request node data."""

    model_config = ConfigDict(extra="ignore")

    method: str = "get"
    url: str
    authorization: Authorization = Field(default_factory=Authorization)
    headers: str = ""
    params: str = ""
    body: Body | None = None
    timeout: Timeouts | None = None


def _pairs(text: str, pool: VariablePool) -> list[tuple[str, str]]:
    """Dify's ``key:value`` lines, rendered."""
    pairs = []
    for line in pool.render(text).splitlines():
        if not line.strip():
            continue
        key, _, value = line.partition(":")
        pairs.append((key.strip(), value.strip()))
    return pairs


class HttpRequestNode(Node):
    """Outputs ``status_code``, ``body`` (text), ``headers`` and ``files`` (always empty here)."""

    node_type = "http-request"

    def __init__(self, config: NodeConfig) -> None:
        super().__init__(config)
        self.data = parse_data(HttpRequestData, config)
        if self.data.method.lower() not in _METHODS:
            raise GraphValidationError(
                f"{config.describe()}: unknown HTTP method {self.data.method!r}"
            )

    def selectors(self) -> list[Selector]:
        texts = [self.data.url, self.data.headers, self.data.params]
        if self.data.body is not None:
            texts.append(self.data.body.text())
            if isinstance(self.data.body.data, list):
                texts.extend(item.key for item in self.data.body.data)
        return [ref for text in texts for ref in template_references(text)]

    def _request(self, pool: VariablePool) -> dict[str, Any]:
        headers = dict(_pairs(self.data.headers, pool))
        auth = self.data.authorization
        if auth.type == "api-key" and auth.config is not None:
            key = pool.render(auth.config.api_key)
            if auth.config.type == "bearer":
                headers["Authorization"] = f"Bearer {key}"
            elif auth.config.type == "basic":
                headers["Authorization"] = f"Basic {key}"
            else:
                headers[auth.config.header or "Authorization"] = key
        request: dict[str, Any] = {
            "method": self.data.method.upper(),
            "url": pool.render(self.data.url).strip(),
            "headers": headers,
            "params": _pairs(self.data.params, pool),
        }
        body = self.data.body
        if body is None or body.type == "none":
            return request
        items = body.data if isinstance(body.data, list) else []
        if body.type == "json":
            request["content"] = pool.render(body.text()).encode()
            headers.setdefault("Content-Type", "application/json")
        elif body.type == "raw-text":
            request["content"] = pool.render(body.text()).encode()
        elif body.type == "x-www-form-urlencoded":
            request["data"] = {pool.render(i.key): pool.render(i.value) for i in items}
        elif body.type == "form-data":
            request["files"] = {pool.render(i.key): (None, pool.render(i.value)) for i in items}
        else:
            raise NodeError("binary (file) request bodies are not supported")
        return request

    def _timeout(self, config: HttpRequestConfig) -> httpx.Timeout:
        asked = self.data.timeout or Timeouts()

        def pick(value: float | None, limit: float) -> float:
            return min(value, limit) if value else limit

        return httpx.Timeout(
            pick(asked.read, config.read_timeout),
            connect=pick(asked.connect, config.connect_timeout),
            write=pick(asked.write, config.write_timeout),
        )

    def declared_outputs(self) -> list[str]:
        return ["status_code", "body", "headers", "files"]

    def run(self, ctx: NodeContext) -> NodeRun:
        config = ctx.services.http
        request = self._request(ctx.pool)
        if not request["url"].startswith(("http://", "https://")):
            raise NodeError(f"URL must start with http:// or https://, got {request['url']!r}")
        inputs = {k: v for k, v in request.items() if k in ("method", "url", "params")}

        def guard(outgoing: httpx.Request) -> None:
            check_address(outgoing.url.host, config)

        ctx.stop.raise_if_set()
        body = bytearray()
        try:
            with (
                httpx.Client(
                    timeout=self._timeout(config),
                    verify=config.verify_ssl,
                    follow_redirects=True,
                    event_hooks={"request": [guard]},
                ) as client,
                client.stream(**request) as response,
            ):
                for piece in response.iter_bytes():
                    ctx.stop.raise_if_set()
                    body.extend(piece)
                    if len(body) > config.max_response_bytes:
                        raise NodeError(
                            f"response is larger than {config.max_response_bytes} bytes"
                        )
                status = response.status_code
                headers = dict(response.headers)
                encoding = response.encoding or "utf-8"
        except httpx.HTTPError as exc:
            raise NodeError(f"HTTP request to {request['url']} failed: {exc}") from exc
        text = body.decode(encoding, errors="replace")
        if status >= 400 and (self.policy.max_retries or self.policy.error_strategy):
            # As in Dify: an error status fails the node only when it can retry or handle it.
            raise NodeError(f"HTTP {status} from {request['url']}: {text[:200]}")
        return NodeRunResult(
            outputs={"status_code": status, "body": text, "headers": headers, "files": []},
            inputs=inputs,
            process_data={"request": f"{request['method']} {request['url']}"},
        )
        yield  # a generator, like every node
