"""code: runs the node's Python ``main(**inputs)`` in a confined child process.

Inputs and outputs cross as JSON; declared outputs are checked by type, as Dify does.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from relay.workflow.errors import GraphValidationError, NodeError
from relay.workflow.graph import NodeConfig
from relay.workflow.nodes.base import Node, NodeContext, NodeRun, NodeRunResult, parse_data
from relay.workflow.nodes.sandbox import CodeSandbox
from relay.workflow.variables import Selector, as_selector

_ARRAY_ITEM: dict[str, type | tuple[type, ...]] = {
    "array[string]": str,
    "array[number]": (int, float),
    "array[object]": dict,
    "array[boolean]": bool,
}


class CodeVariable(BaseModel):
    """An argument of ``main`` bound to a variable."""

    model_config = ConfigDict(extra="ignore")

    variable: str
    value_selector: list[str]


class CodeOutput(BaseModel):
    """A declared output and its type."""

    model_config = ConfigDict(extra="ignore")

    type: str


class CodeData(BaseModel):
    """code node data."""

    model_config = ConfigDict(extra="ignore")

    code: str
    code_language: str = "python3"
    variables: list[CodeVariable] = Field(default_factory=list)
    outputs: dict[str, CodeOutput] = Field(default_factory=dict)


def check_output(name: str, kind: str, value: Any) -> Any:
    """Return ``value`` if it matches the declared type, else raise NodeError."""
    if value is None:
        return None
    ok: bool
    if kind == "string":
        ok = isinstance(value, str)
    elif kind == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif kind == "boolean":
        ok = isinstance(value, bool)
    elif kind == "object":
        ok = isinstance(value, dict)
    elif kind in _ARRAY_ITEM:
        item = _ARRAY_ITEM[kind]
        ok = isinstance(value, list) and all(
            isinstance(v, item) and not (kind == "array[number]" and isinstance(v, bool))
            for v in value
        )
    else:
        ok = kind not in ("array", "array[any]") or isinstance(value, list)
    if not ok:
        raise NodeError(f"output '{name}' must be {kind}, got {type(value).__name__}")
    return value


class CodeNode(Node):
    """Outputs what ``main`` returned for each declared output."""

    node_type = "code"

    def __init__(self, config: NodeConfig) -> None:
        super().__init__(config)
        self.data = parse_data(CodeData, config)
        if self.data.code_language != "python3":
            raise GraphValidationError(
                f"{config.describe()} is written in {self.data.code_language!r}; "
                "relay runs python3 code only"
            )

    def selectors(self) -> list[Selector]:
        return [as_selector(v.value_selector) for v in self.data.variables]

    def declared_outputs(self) -> list[str] | None:
        return list(self.data.outputs) or None

    def run(self, ctx: NodeContext) -> NodeRun:
        inputs = {v.variable: ctx.pool.get(v.value_selector) for v in self.data.variables}
        reply = CodeSandbox(ctx.services.code).run(self.data.code, inputs, ctx.stop)
        outputs: dict[str, Any] = {}
        for name, declared in self.data.outputs.items():
            if name not in reply.result:
                raise NodeError(f"output '{name}' is missing from what main() returned")
            outputs[name] = check_output(name, declared.type, reply.result[name])
        if not self.data.outputs:
            outputs = dict(reply.result)
        return NodeRunResult(outputs=outputs, inputs=inputs, process_data={"stdout": reply.stdout})
        yield  # a generator, like every node
