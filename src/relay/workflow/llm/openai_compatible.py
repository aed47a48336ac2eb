"""An OpenAI-compatible chat completions provider, streamed over Server-Sent Events with httpx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx

from relay.workflow.config import LLMProviderConfig
from relay.workflow.llm.base import (
    ChatMessage,
    ChatRequest,
    FunctionCall,
    LLMDelta,
    LLMError,
    LLMUsage,
)
from relay.workflow.stop import StopToken

OPENAI_LABEL = "openai"
# Completion parameters the OpenAI API understands; Dify exports others we must not forward.
_PARAMETERS = (
    "temperature",
    "top_p",
    "max_tokens",
    "presence_penalty",
    "frequency_penalty",
    "stop",
)


class OpenAICompatibleProvider:
    """POSTs ``{base_url}/chat/completions`` with ``stream: true`` and yields the deltas."""

    label = OPENAI_LABEL

    def __init__(self, config: LLMProviderConfig, client: httpx.Client | None = None) -> None:
        if not config.base_url:
            raise LLMError("the openai LLM provider needs a base_url")
        self._url = config.base_url.rstrip("/") + "/chat/completions"
        self._model = config.model
        headers = {"Accept": "text/event-stream"}
        if config.api_key is not None:
            headers["Authorization"] = f"Bearer {config.api_key.get_secret_value()}"
        self._client = client or httpx.Client(
            headers=headers, timeout=httpx.Timeout(config.timeout, connect=10.0)
        )
        self._headers = headers

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def stream(self, request: ChatRequest, stop: StopToken) -> Iterator[LLMDelta]:
        """Stream the completion; usage comes from the API's final chunk when it sends one."""
        payload: dict[str, Any] = {
            "model": self._model or request.model,
            "messages": [_message(m) for m in request.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        payload.update({k: v for k, v in request.parameters.items() if k in _PARAMETERS})
        if request.tools and request.tool_mode == "native":
            payload["tools"] = [
                {"type": "function", "function": {"name": t.name, "description": t.description,
                                                  "parameters": dict(t.parameters)}}
                for t in request.tools
            ]  # fmt: skip
        calls: dict[int, dict[str, str]] = {}
        usage: LLMUsage | None = None
        finish: str | None = None
        pieces = 0
        try:
            with self._client.stream(
                "POST", self._url, json=payload, headers=self._headers
            ) as resp:
                if resp.status_code != 200:
                    body = resp.read()[:500].decode(errors="replace")
                    raise LLMError(f"LLM API returned HTTP {resp.status_code}: {body}")
                for line in resp.iter_lines():
                    stop.raise_if_set()
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = _decode(data)
                    if chunk.get("usage"):
                        usage = LLMUsage(
                            prompt_tokens=int(chunk["usage"].get("prompt_tokens") or 0),
                            completion_tokens=int(chunk["usage"].get("completion_tokens") or 0),
                        )
                    for choice in chunk.get("choices") or []:
                        finish = choice.get("finish_reason") or finish
                        delta = choice.get("delta") or {}
                        _collect_calls(calls, delta.get("tool_calls"))
                        text = delta.get("content")
                        if text:
                            pieces += 1
                            yield LLMDelta(text=text)
        except httpx.HTTPError as exc:
            raise LLMError(f"LLM API request to {self._url} failed: {exc}") from exc
        if usage is None:
            # Some compatible servers send no usage; count pieces so the run still reports some.
            prompt = sum(len(m.content.split()) for m in request.messages)
            usage = LLMUsage(prompt_tokens=prompt, completion_tokens=pieces)
        found = tuple(
            FunctionCall(
                id=c["id"] or f"call_{i}", name=c["name"], arguments=c["arguments"] or "{}"
            )
            for i, c in sorted(calls.items())
        )
        yield LLMDelta(usage=usage, finish_reason=finish or "stop", tool_calls=found)


def _collect_calls(calls: dict[int, dict[str, str]], pieces: Any) -> None:
    """Stream chunks carry tool calls in pieces keyed by index: id and name first, then the
    arguments' JSON a few characters at a time."""
    for piece in pieces or []:
        if not isinstance(piece, dict):
            continue
        call = calls.setdefault(
            int(piece.get("index") or 0), {"id": "", "name": "", "arguments": ""}
        )
        call["id"] = piece.get("id") or call["id"]
        function = piece.get("function") or {}
        call["name"] = function.get("name") or call["name"]
        call["arguments"] += function.get("arguments") or ""


def _message(message: ChatMessage) -> dict[str, Any]:
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if message.tool_calls:
        return {
            "role": message.role,
            "content": message.content or None,
            "tool_calls": [
                {"id": c.id, "type": "function",
                 "function": {"name": c.name, "arguments": c.arguments}}
                for c in message.tool_calls
            ],
        }  # fmt: skip
    if not message.images:
        return {"role": message.role, "content": message.content}
    parts: list[dict[str, Any]] = [{"type": "text", "text": message.content}]
    parts.extend({"type": "image_url", "image_url": {"url": url}} for url in message.images)
    return {"role": message.role, "content": parts}


def _decode(data: str) -> dict[str, Any]:
    try:
        chunk = json.loads(data)
    except json.JSONDecodeError as exc:
        raise LLMError(f"LLM API sent a malformed stream chunk: {data[:200]!r}") from exc
    if not isinstance(chunk, dict):
        raise LLMError(f"LLM API sent a malformed stream chunk: {data[:200]!r}")
    if chunk.get("error"):
        raise LLMError(f"LLM API error: {chunk['error']}")
    return chunk
