"""question-classifier: an LLM puts the query in one of the node's classes; the class's id is the
edge taken (as Dify's ``sourceHandle``), its name the ``class_name`` output.

The model is asked for ``{"category_id", "category_name"}``; a reply naming no known class falls
back to the first class, as Dify does. The offline provider answers by word overlap.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field

from relay.workflow.errors import GraphValidationError
from relay.workflow.graph import NodeConfig
from relay.workflow.llm.base import ChatMessage, StructuredTask
from relay.workflow.nodes.base import Node, NodeContext, NodeRun, NodeRunResult, parse_data
from relay.workflow.nodes.llm import MemoryConfig, ModelConfig, VisionConfig, vision_selector
from relay.workflow.nodes.llm_call import complete, history, json_object, with_images
from relay.workflow.variables import Selector, as_selector, template_references, to_text


class ClassConfig(BaseModel):
    """One class: its id names the outgoing edge."""

    model_config = ConfigDict(extra="ignore")

    id: str
    name: str = ""


class QuestionClassifierData(BaseModel):
    """question-classifier node data."""

    model_config = ConfigDict(extra="ignore")

    query_variable_selector: list[str]
    model: ModelConfig
    classes: list[ClassConfig] = Field(min_length=1)
    instruction: str | None = None
    memory: MemoryConfig | None = None
    vision: VisionConfig = Field(default_factory=VisionConfig)


_SYSTEM = (
    "You classify the user's text into exactly one of the categories below. Answer with one "
    'JSON object {{"category_id": ..., "category_name": ...}} and nothing else.\n'
    "Categories: {categories}\n{instruction}"
)


class QuestionClassifierNode(Node):
    """Outputs ``class_name``, ``class_id`` and ``usage``; takes the chosen class's edges."""

    node_type = "question-classifier"

    def __init__(self, config: NodeConfig) -> None:
        super().__init__(config)
        self.data = parse_data(QuestionClassifierData, config)
        ids = [c.id for c in self.data.classes]
        if len(set(ids)) != len(ids):
            raise GraphValidationError(f"{config.describe()} has two classes with the same id")

    @property
    def decides_branch(self) -> bool:
        return True

    def selectors(self) -> list[Selector]:
        found = [as_selector(self.data.query_variable_selector)]
        found.extend(template_references(self.data.instruction or ""))
        if self.data.vision.enabled:
            found.append(vision_selector(self.data.vision))
        return found

    def declared_outputs(self) -> list[str]:
        return ["class_name", "class_id", "usage"]

    def run(self, ctx: NodeContext) -> NodeRun:
        query = to_text(ctx.pool.get(self.data.query_variable_selector))
        classes = [{"id": c.id, "name": c.name} for c in self.data.classes]
        system = _SYSTEM.format(
            categories=json.dumps(
                [{"category_id": c["id"], "category_name": c["name"]} for c in classes],
                ensure_ascii=False,
            ),
            instruction=ctx.pool.render(self.data.instruction or ""),
        )
        messages = [
            ChatMessage("system", system.strip()),
            *history(ctx, self.data.memory),
            with_images(
                ctx, self.id, self.data.model, self.data.vision, ChatMessage("user", query)
            ),
        ]
        task = StructuredTask("classify", query, classes=tuple(classes))
        reply = complete(ctx, self.id, self.data.model, messages, task)
        chosen = _choose(reply.text, self.data.classes)
        return NodeRunResult(
            outputs={"class_name": chosen.name, "class_id": chosen.id, "usage": reply.usage},
            inputs={"query": query},
            process_data={
                "prompts": reply.prompts,
                "model_name": reply.model,
                "provider": reply.provider,
                "reply": reply.text,
            },
            metadata={**reply.usage, "provider": reply.provider, "model": reply.model},
            edge_source_handle=chosen.id,
        )
        yield  # a generator, like every node


def _choose(text: str, classes: list[ClassConfig]) -> ClassConfig:
    answer = json_object(text) or {}
    by_id = {c.id: c for c in classes}
    wanted_id = str(answer.get("category_id", ""))
    if wanted_id in by_id:
        return by_id[wanted_id]
    wanted_name = str(answer.get("category_name", "")).strip().lower()
    for item in classes:
        if wanted_name and item.name.strip().lower() == wanted_name:
            return item
    return classes[0]
