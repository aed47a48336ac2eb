"""One non-streamed LLM call for nodes that want a JSON answer (classifier, extractor)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from relay.workflow.errors import NodeError
from relay.workflow.llm.base import ChatMessage, ChatRequest, LLMUsage, StructuredTask
from relay.workflow.nodes.base import NodeContext
from relay.workflow.nodes.llm import (
    MemoryConfig,
    ModelConfig,
    VisionConfig,
    last_turns,
    vision_images,
)


@dataclass(frozen=True)
class Completion:
    """The whole reply of one call and what to report about it."""

    text: str
    usage: dict[str, int]
    provider: str
    model: str
    prompts: list[dict[str, Any]]


def history(ctx: NodeContext, memory: MemoryConfig | None) -> list[ChatMessage]:
    """Past turns the node's memory settings keep (none without memory)."""
    if memory is None:
        return []
    past = list(ctx.run.chat_history)
    return last_turns(past, memory.window.size) if memory.window.enabled else past


def with_images(
    ctx: NodeContext, node_id: str, model: ModelConfig, vision: VisionConfig, query: ChatMessage
) -> ChatMessage:
    """The query with the images vision selects; NodeError if the provider takes none."""
    images = vision_images(vision, ctx.pool)
    if not images:
        return query
    if not ctx.services.llm.supports_vision(node_id, model.provider):
        raise NodeError(
            f"vision is enabled and images were given, but the LLM provider for "
            f"'{model.provider or 'default'}' is configured without vision support"
        )
    return ChatMessage(query.role, query.content, images)


def complete(
    ctx: NodeContext,
    node_id: str,
    model: ModelConfig,
    messages: list[ChatMessage],
    task: StructuredTask,
) -> Completion:
    """Run the request through the node's provider and join the streamed pieces."""
    provider, model_name = ctx.services.llm.provider_for(node_id, model.provider, model.name)
    request = ChatRequest(model_name, tuple(messages), dict(model.completion_params), task)
    parts: list[str] = []
    usage = LLMUsage()
    for delta in provider.stream(request, ctx.stop):
        parts.append(delta.text)
        if delta.usage is not None:
            usage = delta.usage
    return Completion(
        text="".join(parts),
        usage={
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
        },
        provider=provider.label,
        model=model_name,
        prompts=[
            {"role": m.role, "text": m.content, **({"files": list(m.images)} if m.images else {})}
            for m in messages
        ],
    )


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in a reply (inside a code fence or bare); None if there is none."""
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for candidate in candidates:
        start = candidate.find("{")
        while start != -1:
            try:
                found, _ = json.JSONDecoder().raw_decode(candidate[start:])
            except json.JSONDecodeError:
                start = candidate.find("{", start + 1)
                continue
            if isinstance(found, dict):
                return found
            start = candidate.find("{", start + 1)
    return None
