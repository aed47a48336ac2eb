"""The LLM provider interface the llm node streams through."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from relay.workflow.errors import NodeError
from relay.workflow.stop import StopToken


@dataclass(frozen=True)
class FunctionCall:
    """A tool call a model asked for: ``arguments`` is the JSON object it wrote."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class FunctionSpec:
    """A tool offered to a model: its name, description and JSON schema of its parameters."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )


@dataclass(frozen=True)
class ChatMessage:
    """One message of a chat prompt; an assistant message may carry tool calls, a ``tool``
    message answers one (``tool_call_id``)."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str
    images: tuple[str, ...] = ()  # image URLs (or data: URLs) sent with a vision request
    tool_calls: tuple[FunctionCall, ...] = ()
    tool_call_id: str = ""


@dataclass(frozen=True)
class LLMUsage:
    """Token usage of one completion."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class ChatRequest:
    """What the llm node asks for: model name, messages, completion parameters."""

    model: str
    messages: tuple[ChatMessage, ...]
    parameters: Mapping[str, Any] = field(default_factory=dict)
    # What a structured caller (classifier, extractor) expects back; a model reads the prompt,
    # the offline provider answers from this hint so that demos and tests get useful output.
    task: StructuredTask | None = None
    # Tools the model may call. ``native``: sent as the API's function tools, calls come back in
    # LLMDelta.tool_calls; ``react``: described in the prompt, the model writes its actions as
    # text (only the offline provider reads this list then, to plan deterministic actions).
    tools: tuple[FunctionSpec, ...] = ()
    tool_mode: Literal["native", "react"] = "native"


@dataclass(frozen=True)
class StructuredTask:
    """A JSON answer a node asks for: ``classify`` a text into classes or ``extract`` fields.

    ``classes``: ``[{"id", "name"}]``; ``parameters``: ``[{"name", "type", "description",
    "options", "required"}]``.
    """

    kind: Literal["classify", "extract"]
    text: str
    classes: tuple[Mapping[str, str], ...] = ()
    parameters: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class LLMDelta:
    """A streamed piece: text, and on the last piece the usage and finish reason."""

    text: str = ""
    usage: LLMUsage | None = None
    finish_reason: str | None = None
    tool_calls: tuple[FunctionCall, ...] = ()  # complete calls, on the last piece


class LLMError(NodeError):
    """The provider refused or failed the request."""

    code = "llm_error"


class LLMProvider(Protocol):
    """Streams a chat completion; raises NodeStopped when ``stop`` is set, LLMError on failure."""

    @property
    def label(self) -> str:
        """How the provider is named in events and records ("offline", "openai")."""
        ...

    def stream(self, request: ChatRequest, stop: StopToken) -> Iterator[LLMDelta]:
        """Yield the reply piece by piece."""
        ...


class LLMProviderSource(Protocol):
    """Chooses the provider (and model name) for an llm node."""

    def provider_for(
        self, node_id: str, model_provider: str, model_name: str
    ) -> tuple[LLMProvider, str]:
        """The provider to call and the model name to send."""
        ...

    def supports_vision(self, node_id: str, model_provider: str) -> bool:
        """Whether the provider chosen for the node accepts images."""
        ...
