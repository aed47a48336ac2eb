"""One non-streamed LLM call for nodes that want a JSON answer (classifier, extractor)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from relay.workflow.llm.base import ChatMessage, ChatRequest, LLMUsage, StructuredTask
from relay.workflow.nodes.base import NodeContext
from relay.workflow.nodes.llm import MemoryConfig, ModelConfig, last_turns


@dataclass(frozen=True)
class Completion:
    """The whole reply of one call and what to report about it."""

    text: str
    usage: dict[str, int]
    provider: str
    model: str
    prompts: list[dict[str, str]]


def history(ctx: NodeContext, memory: MemoryConfig | None) -> list[ChatMessage]:
    """Past turns the node's memory settings keep (none without memory)."""
    if memory is None:
        return []
    past = list(ctx.run.chat_history)
    return last_turns(past, memory.window.size) if memory.window.enabled else past


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
        prompts=[{"role": m.role, "text": m.content} for m in messages],
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
