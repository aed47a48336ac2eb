"""llm: renders the prompt, streams the reply through the node's provider, reports token usage.

The provider is chosen per node from settings (:class:`LLMSettings`): relay's ``offline``
provider (deterministic, labelled offline) or an OpenAI-compatible HTTP API.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from relay.workflow.errors import NodeError
from relay.workflow.graph import NodeConfig
from relay.workflow.llm.base import ChatMessage, ChatRequest, LLMUsage
from relay.workflow.nodes.base import (
    Node,
    NodeContext,
    NodeRun,
    NodeRunResult,
    StreamChunk,
    parse_data,
)
from relay.workflow.nodes.files import file_type, file_url
from relay.workflow.nodes.template_transform import render_template
from relay.workflow.variables import (
    Selector,
    VariablePool,
    as_selector,
    template_references,
    to_text,
)

CONTEXT_MARK = "{{#context#}}"


class ModelConfig(BaseModel):
    """The model the DSL names (provider and model name as exported by Dify)."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    provider: str = ""
    name: str = ""
    mode: str = "chat"
    completion_params: dict[str, Any] = Field(default_factory=dict)


class PromptMessage(BaseModel):
    """One prompt message; ``edition_type: jinja2`` renders ``jinja2_text`` instead of ``text``."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant"] = "user"
    text: str = ""
    edition_type: str | None = None
    jinja2_text: str | None = None


class ContextConfig(BaseModel):
    """Retrieved context inserted where the prompt says ``{{#context#}}``."""

    model_config = ConfigDict(extra="ignore")

    enabled: bool = False
    variable_selector: list[str] = Field(default_factory=list)


class MemoryWindow(BaseModel):
    """How many past turns (a user message and the replies to it) the prompt keeps."""

    model_config = ConfigDict(extra="ignore")

    enabled: bool = False
    size: int = 50


class MemoryConfig(BaseModel):
    """Chat memory: past turns, then the user's query."""

    model_config = ConfigDict(extra="ignore")

    window: MemoryWindow = Field(default_factory=MemoryWindow)
    query_prompt_template: str | None = None


class Jinja2Variable(BaseModel):
    """A variable a jinja2 prompt sees."""

    model_config = ConfigDict(extra="ignore")

    variable: str
    value_selector: list[str]


class PromptConfig(BaseModel):
    """Variables of jinja2 prompts."""

    model_config = ConfigDict(extra="ignore")

    jinja2_variables: list[Jinja2Variable] = Field(default_factory=list)


class VisionConfigs(BaseModel):
    """Which files the model sees and at what detail."""

    model_config = ConfigDict(extra="ignore")

    variable_selector: list[str] = Field(default_factory=lambda: ["sys", "files"])
    detail: str = "high"


class VisionConfig(BaseModel):
    """Images sent with the prompt (from ``sys.files`` unless configured otherwise)."""

    model_config = ConfigDict(extra="ignore")

    enabled: bool = False
    configs: VisionConfigs | None = None


class LLMData(BaseModel):
    """llm node data (chat mode: a list of messages; completion mode: one prompt)."""

    model_config = ConfigDict(extra="ignore")

    model: ModelConfig
    prompt_template: list[PromptMessage] | PromptMessage = Field(default_factory=list)
    context: ContextConfig = Field(default_factory=ContextConfig)
    memory: MemoryConfig | None = None
    prompt_config: PromptConfig = Field(default_factory=PromptConfig)
    vision: VisionConfig = Field(default_factory=VisionConfig)


class LLMNode(Node):
    """Outputs ``text``, ``usage`` and ``finish_reason``; streams ``[node_id, text]``."""

    node_type = "llm"

    def __init__(self, config: NodeConfig) -> None:
        super().__init__(config)
        self.data = parse_data(LLMData, config)

    @property
    def _messages(self) -> list[PromptMessage]:
        template = self.data.prompt_template
        return template if isinstance(template, list) else [template]

    def selectors(self) -> list[Selector]:
        found: list[Selector] = []
        for message in self._messages:
            found.extend(template_references(message.text))
        if self.data.context.enabled and self.data.context.variable_selector:
            found.append(as_selector(self.data.context.variable_selector))
        if self.data.memory and self.data.memory.query_prompt_template:
            found.extend(template_references(self.data.memory.query_prompt_template))
        found.extend(
            as_selector(v.value_selector) for v in self.data.prompt_config.jinja2_variables
        )
        if self.data.vision.enabled:
            found.append(self._vision_selector)
        return found

    @property
    def _vision_selector(self) -> Selector:
        return vision_selector(self.data.vision)

    def images(self, pool: VariablePool) -> tuple[str, ...]:
        """URLs of the image files the vision settings select (none when vision is off)."""
        return vision_images(self.data.vision, pool)

    def declared_outputs(self) -> list[str]:
        # reasoning_content, structured_output and files exist in newer exports' llm nodes.
        return ["text", "usage", "finish_reason", "reasoning_content", "structured_output", "files"]

    def build_messages(self, ctx: NodeContext) -> list[ChatMessage]:
        """The prompt as sent: template messages, chat history, then the query (with memory)."""
        pool = ctx.pool
        context = ""
        if self.data.context.enabled and self.data.context.variable_selector:
            context = _context_text(pool.get(self.data.context.variable_selector))
        messages = [
            ChatMessage(message.role, self._render(message, pool).replace(CONTEXT_MARK, context))
            for message in self._messages
        ]
        memory = self.data.memory
        if memory is not None:
            history = list(ctx.run.chat_history)
            if memory.window.enabled:
                history = last_turns(history, memory.window.size)
            messages.extend(history)
            query = pool.render(memory.query_prompt_template or "{{#sys.query#}}")
            if query:
                messages.append(ChatMessage("user", query))
        images = self.images(pool)
        if images:
            # Images go with the last user message (the query), as Dify attaches them.
            last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=None)
            if last_user is None:
                messages.append(ChatMessage("user", "", images))
            else:
                found = messages[last_user]
                messages[last_user] = ChatMessage(found.role, found.content, images)
        return [m for m in messages if m.content or m.images or m.role != "system"]

    def _render(self, message: PromptMessage, pool: VariablePool) -> str:
        if message.edition_type == "jinja2" and message.jinja2_text is not None:
            variables = {
                v.variable: pool.get(v.value_selector)
                for v in self.data.prompt_config.jinja2_variables
            }
            return render_template(message.jinja2_text, variables)
        return pool.render(message.text)

    def run(self, ctx: NodeContext) -> NodeRun:
        messages = self.build_messages(ctx)
        model = self.data.model
        if any(m.images for m in messages) and not ctx.services.llm.supports_vision(
            self.id, model.provider
        ):
            raise NodeError(
                f"vision is enabled and images were given, but the LLM provider for "
                f"'{model.provider or 'default'}' is configured without vision support"
            )
        provider, model_name = ctx.services.llm.provider_for(self.id, model.provider, model.name)
        request = ChatRequest(model_name, tuple(messages), dict(model.completion_params))
        parts: list[str] = []
        usage = LLMUsage()
        finish: str | None = None
        for delta in provider.stream(request, ctx.stop):
            if delta.text:
                parts.append(delta.text)
                yield StreamChunk((self.id, "text"), delta.text)
            if delta.usage is not None:
                usage = delta.usage
                finish = delta.finish_reason
        yield StreamChunk((self.id, "text"), "", is_final=True)
        usage_data = {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
        }
        return NodeRunResult(
            outputs={"text": "".join(parts), "usage": usage_data, "finish_reason": finish},
            process_data={
                "prompts": [
                    {
                        "role": m.role,
                        "text": m.content,
                        **({"files": list(m.images)} if m.images else {}),
                    }
                    for m in messages
                ],
                "model_mode": model.mode,
                "model_provider": model.provider,
                "model_name": model_name,
                "provider": provider.label,
            },
            metadata={**usage_data, "provider": provider.label, "model": model_name},
        )


def vision_selector(vision: VisionConfig) -> Selector:
    """Where the vision settings take files from (``sys.files`` unless configured)."""
    configs = vision.configs or VisionConfigs()
    return as_selector(configs.variable_selector or ["sys", "files"])


def vision_images(vision: VisionConfig, pool: VariablePool) -> tuple[str, ...]:
    """URLs of the image files ``vision`` selects (none when it is off)."""
    if not vision.enabled:
        return ()
    value = pool.get(vision_selector(vision))
    files = value if isinstance(value, list) else [] if value is None else [value]
    return tuple(
        file_url(f)
        for f in files
        if isinstance(f, dict) and file_type(f) == "image" and file_url(f)
    )


def last_turns(history: Sequence[ChatMessage], turns: int) -> list[ChatMessage]:
    """The last ``turns`` turns of ``history``: each starts at a user message, as Dify counts.

    Cutting by messages would split a turn and start the prompt with an orphan reply.
    """
    if turns <= 0:
        return []
    starts = [index for index, message in enumerate(history) if message.role == "user"]
    if not starts:
        return []
    return list(history[starts[-turns] if len(starts) >= turns else starts[0] :])


def _context_text(value: Any) -> str:
    if isinstance(value, list):
        pieces = [
            str(item.get("content", "")) if isinstance(item, dict) else to_text(item)
            for item in value
        ]
        return "\n".join(piece for piece in pieces if piece)
    return to_text(value)
