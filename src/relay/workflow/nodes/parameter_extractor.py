"""parameter-extractor: an LLM reads declared parameters out of a text into typed outputs.

Outputs each parameter by name plus ``__is_success`` (1 or 0) and ``__reason`` (why it failed,
else None), as Dify does. A reply that is not JSON, lacks a required parameter or has a value of
the wrong type does not fail the node: ``__is_success`` is 0 and every parameter gets its type's
empty value, so the workflow can branch on it. Both reasoning modes send the same JSON request
(relay's providers have no function calling).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from relay.workflow.graph import NodeConfig
from relay.workflow.llm.base import ChatMessage, StructuredTask
from relay.workflow.nodes.base import Node, NodeContext, NodeRun, NodeRunResult, parse_data
from relay.workflow.nodes.llm import MemoryConfig, ModelConfig, VisionConfig, vision_selector
from relay.workflow.nodes.llm_call import complete, history, json_object, with_images
from relay.workflow.variables import Selector, as_selector, template_references, to_text

_TYPES = frozenset(
    {"string", "number", "boolean", "array[string]", "array[number]", "array[object]",
     "array[boolean]"}
)  # fmt: skip
_OLD_TYPES = {"bool": "boolean", "select": "string"}
RESERVED = ("__is_success", "__reason")


class ParameterConfig(BaseModel):
    """One parameter to extract."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1)
    type: str
    options: list[str] | None = None
    description: str = ""
    required: bool = False

    @field_validator("type", mode="before")
    @classmethod
    def _type(cls, value: Any) -> str:
        kind = _OLD_TYPES.get(str(value), str(value))
        if kind not in _TYPES:
            raise ValueError(f"type '{value}' cannot be extracted (use one of {sorted(_TYPES)})")
        return kind

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if value in RESERVED:
            raise ValueError(f"'{value}' is reserved for the node's own outputs")
        return value


class ParameterExtractorData(BaseModel):
    """parameter-extractor node data."""

    model_config = ConfigDict(extra="ignore")

    model: ModelConfig
    query: list[str]
    parameters: list[ParameterConfig] = Field(default_factory=list)
    instruction: str | None = None
    memory: MemoryConfig | None = None
    vision: VisionConfig = Field(default_factory=VisionConfig)
    reasoning_mode: Literal["function_call", "prompt"] | None = None


_SYSTEM = (
    "Extract the parameters described by this JSON schema from the user's text. Answer with one "
    "JSON object holding the parameters you find, and nothing else.\n"
    "Schema: {schema}\n{instruction}"
)


def _schema(parameters: list[ParameterConfig]) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for parameter in parameters:
        item: dict[str, Any] = {"description": parameter.description}
        if parameter.type.startswith("array["):
            item.update(type="array", items={"type": parameter.type[6:-1]})
        else:
            item["type"] = parameter.type
        if parameter.options:
            item["enum"] = parameter.options
        properties[parameter.name] = item
    return {
        "type": "object",
        "properties": properties,
        "required": [p.name for p in parameters if p.required],
    }


def empty_value(kind: str) -> Any:
    """What a parameter holds when extraction failed."""
    if kind.startswith("array"):
        return []
    return {"string": "", "number": 0, "boolean": False}.get(kind)


class _Invalid(Exception):
    pass


def _coerce(parameter: ParameterConfig, value: Any) -> Any:
    kind = parameter.type
    if kind == "string":
        text = value if isinstance(value, str) else to_text(value)
        if parameter.options and text not in parameter.options:
            raise _Invalid(f"'{parameter.name}' must be one of {parameter.options}, got {text!r}")
        return text
    if kind == "number":
        if isinstance(value, bool):
            raise _Invalid(f"'{parameter.name}' must be a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise _Invalid(f"'{parameter.name}' must be a number, got {value!r}") from None
        return int(number) if number.is_integer() and "." not in str(value) else number
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "false"):
            return str(value).lower() == "true"
        raise _Invalid(f"'{parameter.name}' must be true or false, got {value!r}")
    if not isinstance(value, list):
        raise _Invalid(f"'{parameter.name}' must be an array, got {type(value).__name__}")
    element = ParameterConfig(name=parameter.name, type=kind[6:-1])
    if element.type == "object":
        if not all(isinstance(v, dict) for v in value):
            raise _Invalid(f"'{parameter.name}' must be an array of objects")
        return value
    return [_coerce(element, v) for v in value]


def read_parameters(parameters: list[ParameterConfig], text: str) -> dict[str, Any]:
    """Typed values from a reply; raises ValueError naming the first problem."""
    answer = json_object(text)
    if answer is None:
        raise ValueError("the model's reply holds no JSON object")
    found: dict[str, Any] = {}
    for parameter in parameters:
        if answer.get(parameter.name) is None:
            if parameter.required:
                raise ValueError(f"required parameter '{parameter.name}' was not found")
            found[parameter.name] = empty_value(parameter.type)
            continue
        try:
            found[parameter.name] = _coerce(parameter, answer[parameter.name])
        except _Invalid as exc:
            raise ValueError(str(exc)) from None
    return found


class ParameterExtractorNode(Node):
    """Outputs each declared parameter, ``__is_success``, ``__reason`` and ``__usage``."""

    node_type = "parameter-extractor"

    def __init__(self, config: NodeConfig) -> None:
        super().__init__(config)
        self.data = parse_data(ParameterExtractorData, config)

    def selectors(self) -> list[Selector]:
        found = [as_selector(self.data.query)]
        found.extend(template_references(self.data.instruction or ""))
        if self.data.vision.enabled:
            found.append(vision_selector(self.data.vision))
        return found

    def declared_outputs(self) -> list[str]:
        return [p.name for p in self.data.parameters] + [*RESERVED, "__usage"]

    def run(self, ctx: NodeContext) -> NodeRun:
        text = to_text(ctx.pool.get(self.data.query))
        schema = _schema(self.data.parameters)
        system = _SYSTEM.format(
            schema=json.dumps(schema, ensure_ascii=False),
            instruction=ctx.pool.render(self.data.instruction or ""),
        )
        messages = [
            ChatMessage("system", system.strip()),
            *history(ctx, self.data.memory),
            with_images(ctx, self.id, self.data.model, self.data.vision, ChatMessage("user", text)),
        ]
        task = StructuredTask(
            "extract", text, parameters=tuple(p.model_dump() for p in self.data.parameters)
        )
        reply = complete(ctx, self.id, self.data.model, messages, task)
        reason: str | None = None
        try:
            values = read_parameters(self.data.parameters, reply.text)
        except ValueError as exc:
            reason = str(exc)
            values = {p.name: empty_value(p.type) for p in self.data.parameters}
        return NodeRunResult(
            outputs={
                **values,
                "__is_success": 0 if reason else 1,
                "__reason": reason,
                "__usage": reply.usage,
            },
            inputs={"query": text},
            process_data={
                "prompts": reply.prompts,
                "reply": reply.text,
                "schema": schema,
                "model_name": reply.model,
                "provider": reply.provider,
            },
            metadata={**reply.usage, "provider": reply.provider, "model": reply.model},
        )
        yield  # a generator, like every node
