"""if-else: picks the first case whose conditions hold; its ``case_id`` names the edge taken."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from relay.workflow.errors import GraphValidationError
from relay.workflow.graph import NodeConfig
from relay.workflow.nodes.base import Node, NodeContext, NodeRun, NodeRunResult, parse_data
from relay.workflow.nodes.conditions import OPERATORS, UNARY, evaluate
from relay.workflow.variables import Selector, VariablePool, as_selector, template_references

ELSE_HANDLE = "false"


class Condition(BaseModel):
    """``variable_selector <comparison_operator> value``."""

    model_config = ConfigDict(extra="ignore")

    variable_selector: list[str]
    comparison_operator: str
    value: str | list[str] | int | float | bool | None = None
    varType: str | None = None


class Case(BaseModel):
    """Conditions joined by and/or; ``case_id`` is the source handle of its edges."""

    model_config = ConfigDict(extra="ignore")

    case_id: str
    logical_operator: Literal["and", "or"] = "and"
    conditions: list[Condition] = Field(default_factory=list)


class IfElseData(BaseModel):
    """if-else node data; older exports have one unnamed case at the top level."""

    model_config = ConfigDict(extra="ignore")

    cases: list[Case] | None = None
    logical_operator: Literal["and", "or"] = "and"
    conditions: list[Condition] | None = None

    @model_validator(mode="after")
    def _legacy(self) -> IfElseData:
        if self.cases is None:
            self.cases = [
                Case(
                    case_id="true",
                    logical_operator=self.logical_operator,
                    conditions=self.conditions or [],
                )
            ]
        return self


class IfElseNode(Node):
    """Outputs ``result`` and ``selected_case_id``; untaken branches are skipped downstream."""

    node_type = "if-else"

    def __init__(self, config: NodeConfig) -> None:
        super().__init__(config)
        self.data = parse_data(IfElseData, config)
        for case in self.cases:
            for condition in case.conditions:
                if condition.comparison_operator not in OPERATORS:
                    raise GraphValidationError(
                        f"{config.describe()} uses unknown comparison operator "
                        f"'{condition.comparison_operator}'"
                    )

    @property
    def cases(self) -> list[Case]:
        """The cases in evaluation order."""
        return self.data.cases or []

    @property
    def decides_branch(self) -> bool:
        return True

    def selectors(self) -> list[Selector]:
        found: list[Selector] = []
        for case in self.cases:
            for condition in case.conditions:
                found.append(as_selector(condition.variable_selector))
                if isinstance(condition.value, str):
                    found.extend(template_references(condition.value))
        return found

    def run(self, ctx: NodeContext) -> NodeRun:
        checked: list[dict[str, Any]] = []
        selected = ELSE_HANDLE
        for case in self.cases:
            results = [_check(condition, ctx.pool, checked) for condition in case.conditions]
            met = all(results) if case.logical_operator == "and" else any(results)
            if results and met:
                selected = case.case_id
                break
        return NodeRunResult(
            outputs={"result": selected != ELSE_HANDLE, "selected_case_id": selected},
            process_data={"condition_results": checked},
            edge_source_handle=selected,
        )
        yield  # a generator, like every node


def _check(condition: Condition, pool: VariablePool, log: list[dict[str, Any]]) -> bool:
    actual = pool.get(condition.variable_selector)
    expected: Any = condition.value
    if isinstance(expected, str):
        expected = pool.render(expected)
    operator = condition.comparison_operator
    result = evaluate(operator, actual, None if operator in UNARY else expected)
    log.append(
        {
            "selector": condition.variable_selector,
            "operator": operator,
            "actual": actual,
            "expected": expected,
            "result": result,
        }
    )
    return result
