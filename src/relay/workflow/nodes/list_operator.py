"""list-operator: filters, picks, sorts and cuts an array; outputs ``result``, ``first_record``
and ``last_record``.

Steps run in Dify's order: filter, extract (the n-th item, 1-based), order, limit. For arrays of
files, filter and order conditions name a file attribute in ``key``; for arrays of strings,
numbers or booleans the item itself is compared.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from relay.workflow.errors import GraphValidationError, NodeError
from relay.workflow.graph import NodeConfig
from relay.workflow.nodes.base import Node, NodeContext, NodeRun, NodeRunResult, parse_data
from relay.workflow.nodes.conditions import OPERATORS, UNARY, evaluate
from relay.workflow.nodes.files import FILE_ATTRIBUTES, file_attribute, is_file
from relay.workflow.variables import Selector, VariablePool, as_selector, template_references


class FilterCondition(BaseModel):
    """``item[key] <comparison_operator> value``."""

    model_config = ConfigDict(extra="ignore")

    key: str = ""
    comparison_operator: str = "contains"
    value: str | list[str] | bool | int | float = ""


class FilterBy(BaseModel):
    """Conditions every kept item meets (joined by and)."""

    model_config = ConfigDict(extra="ignore")

    enabled: bool = False
    conditions: list[FilterCondition] = Field(default_factory=list)


class OrderBy(BaseModel):
    """Sort by the item (or a file attribute) ascending or descending."""

    model_config = ConfigDict(extra="ignore")

    enabled: bool = False
    key: str = ""
    value: Literal["asc", "desc"] = "asc"


class Limit(BaseModel):
    """Keep the first ``size`` items."""

    model_config = ConfigDict(extra="ignore")

    enabled: bool = False
    size: int = -1


class ExtractBy(BaseModel):
    """Keep only item number ``serial`` (1-based; may be a ``{{#...#}}`` reference)."""

    model_config = ConfigDict(extra="ignore")

    enabled: bool = False
    serial: str = "1"


class ListOperatorData(BaseModel):
    """list-operator node data."""

    model_config = ConfigDict(extra="ignore")

    variable: list[str]
    filter_by: FilterBy = Field(default_factory=FilterBy)
    order_by: OrderBy = Field(default_factory=OrderBy)
    limit: Limit = Field(default_factory=Limit)
    extract_by: ExtractBy = Field(default_factory=ExtractBy)


class ListOperatorNode(Node):
    """Outputs ``result`` (the array after each step), ``first_record`` and ``last_record``."""

    node_type = "list-operator"

    def __init__(self, config: NodeConfig) -> None:
        super().__init__(config)
        self.data = parse_data(ListOperatorData, config)
        for condition in self.data.filter_by.conditions:
            if condition.comparison_operator not in OPERATORS:
                raise GraphValidationError(
                    f"{config.describe()} filters with unknown operator "
                    f"'{condition.comparison_operator}'"
                )
        keys = [c.key for c in self.data.filter_by.conditions] + [self.data.order_by.key]
        for key in keys:
            if key and key not in FILE_ATTRIBUTES:
                raise GraphValidationError(
                    f"{config.describe()} uses key '{key}'; keys name file attributes "
                    f"({', '.join(FILE_ATTRIBUTES)})"
                )

    def selectors(self) -> list[Selector]:
        found = [as_selector(self.data.variable)]
        if self.data.extract_by.enabled:
            found.extend(template_references(self.data.extract_by.serial))
        for condition in self.data.filter_by.conditions:
            if isinstance(condition.value, str):
                found.extend(template_references(condition.value))
        return found

    def declared_outputs(self) -> list[str]:
        return ["result", "first_record", "last_record"]

    def run(self, ctx: NodeContext) -> NodeRun:
        value = ctx.pool.get(self.data.variable)
        shown = ".".join(self.data.variable)
        if value is None:
            items: list[Any] = []
        elif isinstance(value, list):
            items = list(value)
        else:
            raise NodeError(
                f"list-operator needs an array at '{shown}', got {type(value).__name__}"
            )
        if self.data.filter_by.enabled:
            items = [item for item in items if self._keep(item, ctx.pool)]
        if self.data.extract_by.enabled:
            items = _extract(items, ctx.pool.render(self.data.extract_by.serial))
        if self.data.order_by.enabled:
            items = _order(items, self.data.order_by)
        if self.data.limit.enabled and self.data.limit.size >= 0:
            items = items[: self.data.limit.size]
        return NodeRunResult(
            outputs={
                "result": items,
                "first_record": items[0] if items else None,
                "last_record": items[-1] if items else None,
            },
            inputs={"variable": value},
        )
        yield  # a generator, like every node

    def _keep(self, item: Any, pool: VariablePool) -> bool:
        for condition in self.data.filter_by.conditions:
            actual = _field(item, condition.key)
            expected: Any = condition.value
            if isinstance(expected, str):
                expected = pool.render(expected)
            if condition.key == "extension" and isinstance(expected, str):
                expected = expected if expected.startswith(".") else f".{expected}"
            operator = condition.comparison_operator
            if not evaluate(operator, actual, None if operator in UNARY else expected):
                return False
        return True


def _field(item: Any, key: str) -> Any:
    if key and is_file(item):
        return file_attribute(item, key)
    return item


def _extract(items: list[Any], serial: str) -> list[Any]:
    try:
        index = int(serial.strip())
    except ValueError:
        raise NodeError(f"list-operator extract serial must be a number, got {serial!r}") from None
    if index < 1 or index > len(items):
        raise NodeError(f"list-operator cannot extract item {index} of {len(items)}")
    return [items[index - 1]]


def _order(items: list[Any], order: OrderBy) -> list[Any]:
    def sort_key(item: Any) -> tuple[int, Any]:
        value = _field(item, order.key)
        # Numbers sort among numbers, everything else as text, numbers first.
        if isinstance(value, int | float) and not isinstance(value, bool):
            return (0, value)
        return (1, str(value))

    # Items without a value go last in either direction.
    present = [item for item in items if _field(item, order.key) is not None]
    missing = [item for item in items if _field(item, order.key) is None]
    return sorted(present, key=sort_key, reverse=order.value == "desc") + missing
