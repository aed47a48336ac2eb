"""template-transform: renders a Jinja2 template in Jinja2's sandbox."""

from __future__ import annotations

from functools import lru_cache

import jinja2
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field

from relay.workflow.errors import GraphValidationError, NodeError
from relay.workflow.graph import NodeConfig
from relay.workflow.nodes.base import Node, NodeContext, NodeRun, NodeRunResult, parse_data
from relay.workflow.variables import Selector, as_selector

# Dify's TEMPLATE_TRANSFORM_MAX_LENGTH.
MAX_OUTPUT_LENGTH = 400_000

# The sandbox refuses unsafe attribute access (``__class__``, ``mro``, ...), which is what makes
# user-written templates safe to render in-process.
_ENVIRONMENT = SandboxedEnvironment(autoescape=False, keep_trailing_newline=True)


@lru_cache(maxsize=1024)
def compile_template(source: str) -> jinja2.Template:
    """Compile once per distinct template text (a chain of nodes reuses the same few)."""
    return _ENVIRONMENT.from_string(source)


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

    def run(self, ctx: NodeContext) -> NodeRun:
        inputs = {v.variable: ctx.pool.get(v.value_selector) for v in self.data.variables}
        try:
            output = compile_template(self.data.template).render(**inputs)
        except jinja2.TemplateError as exc:
            raise NodeError(f"template error: {exc}") from exc
        if len(output) > MAX_OUTPUT_LENGTH:
            raise NodeError(f"template output is longer than {MAX_OUTPUT_LENGTH} characters")
        return NodeRunResult(outputs={"output": output}, inputs=inputs)
        yield  # a generator, like every node
