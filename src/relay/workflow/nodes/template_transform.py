"""template-transform: renders a Jinja2 template in Jinja2's sandbox, with limits enforced
while it renders (``template_limits``)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jinja2
from pydantic import BaseModel, ConfigDict, Field

from relay.workflow.errors import GraphValidationError, NodeError
from relay.workflow.graph import NodeConfig
from relay.workflow.nodes.base import Node, NodeContext, NodeRun, NodeRunResult, parse_data
from relay.workflow.nodes.template_limits import (
    MAX_OUTPUT_LENGTH,
    BoundedEnvironment,
    render_bounded,
)
from relay.workflow.variables import Selector, as_selector

__all__ = ["MAX_OUTPUT_LENGTH", "TemplateTransformNode", "compile_template", "render_template"]

# The sandbox refuses unsafe attribute access (``__class__``, ``mro``, ...), and the bounded
# environment refuses unbounded allocation and work: together they make user-written templates
# safe to render in-process.
_ENVIRONMENT = BoundedEnvironment(autoescape=False, keep_trailing_newline=True)


@lru_cache(maxsize=1024)
def compile_template(source: str) -> jinja2.Template:
    """Compile once per distinct template text (a chain of nodes reuses the same few)."""
    return _ENVIRONMENT.from_string(source)


def render_template(source: str, variables: dict[str, Any]) -> str:
    """Render ``source`` within the rendering limits; raises NodeError."""
    try:
        return render_bounded(compile_template(source), variables)
    except jinja2.TemplateError as exc:
        raise NodeError(f"template error: {exc}") from exc
    except (OverflowError, MemoryError, RecursionError, ValueError, TypeError) as exc:
        raise NodeError(f"template error: {type(exc).__name__}: {exc}") from exc


class TemplateVariable(BaseModel):
    """A name the template sees, bound to a variable."""

    model_config = ConfigDict(extra="ignore")

    variable: str
    value_selector: list[str]


class TemplateData(BaseModel):
    """template-transform node data."""

    model_config = ConfigDict(extra="ignore")

    template: str = ""
    variables: list[TemplateVariable] = Field(default_factory=list)


class TemplateTransformNode(Node):
    """Outputs ``output``: the rendered template."""

    node_type = "template-transform"

    def __init__(self, config: NodeConfig) -> None:
        super().__init__(config)
        self.data = parse_data(TemplateData, config)
        try:
            compile_template(self.data.template)
        except jinja2.TemplateSyntaxError as exc:
            raise GraphValidationError(
                f"{config.describe()}: template syntax error: {exc}"
            ) from exc

    def selectors(self) -> list[Selector]:
        return [as_selector(v.value_selector) for v in self.data.variables]

    def declared_outputs(self) -> list[str]:
        return ["output"]

    def run(self, ctx: NodeContext) -> NodeRun:
        inputs = {v.variable: ctx.pool.get(v.value_selector) for v in self.data.variables}
        output = render_template(self.data.template, inputs)
        return NodeRunResult(outputs={"output": output}, inputs=inputs)
        yield  # a generator, like every node
