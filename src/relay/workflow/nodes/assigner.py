"""assigner: writes conversation variables (Dify's v1 ``write_mode`` and v2 ``items`` formats)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from relay.workflow.errors import GraphValidationError, NodeError
from relay.workflow.graph import NodeConfig
from relay.workflow.nodes.base import Node, NodeContext, NodeRun, NodeRunResult, parse_data
from relay.workflow.variables import CONVERSATION_NODE_ID, Selector, VariablePool, as_selector


class AssignItem(BaseModel):
    """One v2 operation on one variable."""

    model_config = ConfigDict(extra="ignore")

    variable_selector: list[str]
    operation: str = "over-write"
    input_type: Literal["variable", "constant"] = "variable"
    value: Any = None


class AssignerData(BaseModel):
    """assigner node data, either format."""

    model_config = ConfigDict(extra="ignore")

    version: str | None = None
    assigned_variable_selector: list[str] | None = None
    input_variable_selector: list[str] | None = None
    write_mode: str = "over-write"
    items: list[AssignItem] = Field(default_factory=list)

    def operations(self) -> list[AssignItem]:
        """Both formats as v2 items."""
        if self.items:
            return self.items
        if not self.assigned_variable_selector:
            return []
        return [
            AssignItem(
                variable_selector=self.assigned_variable_selector,
                operation=self.write_mode,
                input_type="variable",
                value=self.input_variable_selector,
            )
        ]


_OPERATIONS = {
    "over-write",
    "set",
    "clear",
    "append",
    "extend",
    "+=",
    "-=",
    "*=",
    "/=",
    "remove-first",
    "remove-last",
}


class AssignerNode(Node):
    """Updates conversation variables; they outlive the run (the caller persists them)."""

    node_type = "assigner"

    def __init__(self, config: NodeConfig) -> None:
        super().__init__(config)
        self.data = parse_data(AssignerData, config)
        for item in self.data.operations():
            # Inside a loop, an assigner updates the loop's variables ([loop_id, label]).
            owners = [CONVERSATION_NODE_ID] + ([config.parent_id] if config.parent_id else [])
            if item.variable_selector[:1] not in [[o] for o in owners] or (
                len(item.variable_selector) != 2
            ):
                raise GraphValidationError(
                    f"{config.describe()} can only assign conversation variables"
                    f"{' and variables of its loop' if config.parent_id else ''}, "
                    f"not {'.'.join(item.variable_selector)}"
                )
            if item.operation not in _OPERATIONS:
                raise GraphValidationError(
                    f"{config.describe()} uses unknown operation '{item.operation}'"
                )

    def selectors(self) -> list[Selector]:
        found = []
        for item in self.data.operations():
            found.append(as_selector(item.variable_selector))
            if item.input_type == "variable" and isinstance(item.value, list) and item.value:
                found.append(as_selector(item.value))
        return found

    def declared_outputs(self) -> list[str]:
        return []

    def run(self, ctx: NodeContext) -> NodeRun:
        updated: dict[str, Any] = {}
        for item in self.data.operations():
            value = _operand(item, ctx.pool)
            current = ctx.pool.get(item.variable_selector)
            new = _apply(item.operation, current, value)
            ctx.pool.add(item.variable_selector, new)
            updated[item.variable_selector[1]] = new
        return NodeRunResult(process_data={"updated": updated})
        yield  # a generator, like every node


def _operand(item: AssignItem, pool: VariablePool) -> Any:
    if item.input_type == "variable":
        return pool.get(item.value) if isinstance(item.value, list) and item.value else None
    return item.value


def _apply(operation: str, current: Any, value: Any) -> Any:
    if operation in ("over-write", "set"):
        return value
    if operation == "clear":
        return type(current)() if isinstance(current, str | list | dict | int | float) else None
    if operation == "append":
        return [*(current or []), value]
    if operation == "extend":
        return [*(current or []), *(value or [])]
    if operation == "remove-first":
        return list(current or [])[1:]
    if operation == "remove-last":
        return list(current or [])[:-1]
    try:
        number = float(value)
        base = float(current or 0)
    except (TypeError, ValueError) as exc:
        raise NodeError(f"'{operation}' needs numbers, got {current!r} and {value!r}") from exc
    if operation == "/=" and number == 0:
        raise NodeError("division by zero in assigner")
    result = {"+=": base + number, "-=": base - number, "*=": base * number}.get(
        operation, base / number if number else 0.0
    )
    return int(result) if result.is_integer() and isinstance(current, int) else result
