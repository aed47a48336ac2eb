"""start: checks the run's user inputs against the declared variables and outputs them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from relay.workflow.errors import NodeError
from relay.workflow.graph import NodeConfig
from relay.workflow.nodes.base import Node, NodeContext, NodeRun, NodeRunResult, parse_data
from relay.workflow.variables import SYSTEM_NODE_ID, SYSTEM_VARIABLE_NAMES

_TEXT_TYPES = {"text-input", "paragraph", "select"}


class StartVariable(BaseModel):
    """One declared input."""

    model_config = ConfigDict(extra="ignore")

    variable: str
    label: str = ""
    type: str = "text-input"
    required: bool = False
    max_length: int | None = None
    options: list[str] = Field(default_factory=list)


class StartData(BaseModel):
    """start node data."""

    model_config = ConfigDict(extra="ignore")

    variables: list[StartVariable] = Field(default_factory=list)


class StartNode(Node):
    """Validates and publishes user inputs under the start node's id."""

    node_type = "start"

    def __init__(self, config: NodeConfig) -> None:
        super().__init__(config)
        self.data = parse_data(StartData, config)

    def declared_outputs(self) -> Iterable[str]:
        names = [declared.variable for declared in self.data.variables]
        return names + [f"{SYSTEM_NODE_ID}.{name}" for name in SYSTEM_VARIABLE_NAMES]

    def run(self, ctx: NodeContext) -> NodeRun:
        outputs: dict[str, Any] = {}
        for declared in self.data.variables:
            outputs[declared.variable] = _check(
                declared, ctx.pool.user_inputs.get(declared.variable)
            )
        inputs = dict(outputs)
        # Older exports read system variables from the start node: [start_id, "sys.query"].
        for name, value in ctx.pool.node_outputs(SYSTEM_NODE_ID).items():
            outputs[f"{SYSTEM_NODE_ID}.{name}"] = value
        return NodeRunResult(outputs=outputs, inputs=inputs)
        yield  # a generator, like every node


def check_inputs(data: Mapping[str, Any], inputs: Mapping[str, Any]) -> dict[str, str]:
    """Problems of ``inputs`` against a start node's ``data``, by variable name (none: empty).

    The same checks the node applies when it runs, so a caller can refuse a run up front.
    """
    try:
        parsed = StartData.model_validate(dict(data))
    except ValidationError:
        return {}  # the graph check reports a malformed start node
    problems: dict[str, str] = {}
    for declared in parsed.variables:
        try:
            _check(declared, inputs.get(declared.variable))
        except NodeError as exc:
            problems[declared.variable] = exc.message
    return problems


def _check(declared: StartVariable, value: Any) -> Any:
    name = declared.label or declared.variable
    if value is None or value == "" or value == []:
        if declared.required:
            raise NodeError(f"input '{name}' is required")
        return None
    if declared.type in _TEXT_TYPES:
        if not isinstance(value, str):
            raise NodeError(f"input '{name}' must be text, got {type(value).__name__}")
        if declared.max_length and len(value) > declared.max_length:
            raise NodeError(f"input '{name}' is longer than {declared.max_length} characters")
        if declared.type == "select" and declared.options and value not in declared.options:
            raise NodeError(f"input '{name}' must be one of {declared.options}")
    elif declared.type == "number":
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise NodeError(f"input '{name}' must be a number")
        try:
            return float(value) if "." in str(value) else int(value)
        except ValueError as exc:
            raise NodeError(f"input '{name}' must be a number, got {value!r}") from exc
    elif declared.type == "file" and not isinstance(value, dict):
        raise NodeError(f"input '{name}' must be a file object")
    elif declared.type == "file-list" and not (
        isinstance(value, list) and all(isinstance(v, dict) for v in value)
    ):
        raise NodeError(f"input '{name}' must be a list of file objects")
    return value
