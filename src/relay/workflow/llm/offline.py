"""relay's offline LLM provider: a deterministic reply derived from the prompt, for demos and tests.

No model is called. The reply is labelled as offline in its text, in the provider label and in
the node's metadata, so nobody mistakes it for a model's answer. It is streamed token by token
with a configurable delay so that streaming behaves as with a real provider.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator

from relay.workflow.config import LLMProviderConfig
from relay.workflow.llm.base import ChatRequest, FunctionCall, LLMDelta, LLMUsage
from relay.workflow.llm.offline_agent import OBSERVATION, agent_reply
from relay.workflow.llm.offline_structured import structured_reply
from relay.workflow.stop import StopToken

OFFLINE_LABEL = "offline"
_TOKEN = re.compile(r"\S+\s*|\s+")
_ECHO_WORDS = 48


def offline_reply(request: ChatRequest) -> str:
    """The reply for ``request``: a digest of the whole prompt and an echo of its last user turn."""
    prompt = "\n".join(f"{m.role}: {m.content} {' '.join(m.images)}" for m in request.messages)
    digest = hashlib.sha256(prompt.encode()).hexdigest()[:8]
    users = [m.content for m in request.messages if m.role == "user"]
    source = users[-1] if users else (request.messages[-1].content if request.messages else "")
    words = source.split()
    echo = " ".join(words[:_ECHO_WORDS]) + (" …" if len(words) > _ECHO_WORDS else "")
    images = sum(len(m.images) for m in request.messages)
    seen = f" [{images} image{'s' if images != 1 else ''} received]" if images else ""
    return f"[offline reply {digest}]{seen} {echo}".rstrip()


def tokenize(text: str) -> list[str]:
    """Split into word-sized pieces that concatenate back to ``text``."""
    return _TOKEN.findall(text)


class OfflineProvider:
    """Streams :func:`offline_reply` (or the configured fixed reply)."""

    label = OFFLINE_LABEL

    def __init__(self, config: LLMProviderConfig) -> None:
        self._delay = config.token_delay
        self._reply = config.reply

    def stream(self, request: ChatRequest, stop: StopToken) -> Iterator[LLMDelta]:
        """Yield the reply token by token, waiting ``token_delay`` between tokens."""
        calls: tuple[FunctionCall, ...] = ()
        if self._reply is not None:
            text = self._reply
        elif request.tools or _after_tools(request):
            text, calls = agent_reply(request)  # a deterministic plan of tool calls
        elif request.task is not None:
            text = structured_reply(request.task)  # useful JSON, not an echo
        else:
            text = offline_reply(request)
        tokens = tokenize(text)
        prompt_tokens = sum(len(m.content.split()) for m in request.messages)
        for i, token in enumerate(tokens):
            if i and self._delay:
                stop.wait(self._delay)
            stop.raise_if_set()
            yield LLMDelta(text=token)
        yield LLMDelta(
            usage=LLMUsage(prompt_tokens=prompt_tokens, completion_tokens=len(tokens)),
            finish_reason="tool_calls" if calls else "stop",
            tool_calls=calls,
        )


def _after_tools(request: ChatRequest) -> bool:
    """A request without tools that follows tool calls (an agent's last, tool-less round)."""
    return any(
        m.role == "tool" or m.tool_calls or (m.role == "assistant" and OBSERVATION in m.content)
        for m in request.messages
    )
