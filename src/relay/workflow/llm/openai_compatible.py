"""An OpenAI-compatible chat completions provider, streamed over Server-Sent Events with httpx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx

from relay.workflow.config import LLMProviderConfig
from relay.workflow.llm.base import ChatMessage, ChatRequest, LLMDelta, LLMError, LLMUsage
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
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            pieces += 1
                            yield LLMDelta(text=text)
        except httpx.HTTPError as exc:
            raise LLMError(f"LLM API request to {self._url} failed: {exc}") from exc
        if usage is None:
            # Some compatible servers send no usage; count pieces so the run still reports some.
            prompt = sum(len(m.content.split()) for m in request.messages)
            usage = LLMUsage(prompt_tokens=prompt, completion_tokens=pieces)
        yield LLMDelta(usage=usage, finish_reason=finish or "stop")


def _message(message: ChatMessage) -> dict[str, Any]:
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
