"""if-else: picks the first case whose conditions hold; its ``case_id`` names the edge taken."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from relay.workflow.errors import GraphValidationError
from relay.workflow.graph import NodeConfig
from relay.workflow.nodes.base import Node, NodeContext, NodeRun, NodeRunResult, parse_data
from relay.workflow.nodes.conditions import OPERATORS, UNARY, evaluate
from relay.workflow.nodes.files import FILE_ATTRIBUTES, file_attribute
from relay.workflow.variables import Selector, VariablePool, as_selector, template_references

ELSE_HANDLE = "false"


class SubCondition(BaseModel):
    """A test on one attribute of each file (``type is image``, ``extension in [.pdf]``)."""

    model_config = ConfigDict(extra="ignore")

    key: str
    comparison_operator: str
    value: str | list[str] | int | float | bool | None = None


class SubVariableCondition(BaseModel):
    """Tests on the files of an array-of-files variable, joined by and/or."""

    model_config = ConfigDict(extra="ignore")

    logical_operator: Literal["and", "or"] = "and"
    conditions: list[SubCondition] = Field(default_factory=list)


class Condition(BaseModel):
    """``variable_selector <comparison_operator> value``, or file sub-conditions."""

    model_config = ConfigDict(extra="ignore")

    variable_selector: list[str]
    comparison_operator: str
    value: str | list[str] | int | float | bool | None = None
    varType: str | None = None
    sub_variable_condition: SubVariableCondition | None = None


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
                _check_sub_conditions(config, condition)

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

    def declared_outputs(self) -> list[str]:
        return ["result", "selected_case_id"]

    def run(self, ctx: NodeContext) -> NodeRun:
        checked: list[dict[str, Any]] = []
        selected = ELSE_HANDLE
        for case in self.cases:
            results = [
                check_condition(condition, ctx.pool, checked) for condition in case.conditions
            ]
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


def _check_sub_conditions(config: NodeConfig, condition: Condition) -> None:
    sub = condition.sub_variable_condition
    if sub is None or not sub.conditions:
        return
    if condition.comparison_operator not in _FILE_OPERATORS:
        raise GraphValidationError(
            f"{config.describe()} tests files of '{'.'.join(condition.variable_selector)}' "
            f"with '{condition.comparison_operator}'; file sub-conditions take "
            f"{', '.join(sorted(_FILE_OPERATORS))}"
        )
    for item in sub.conditions:
        if item.key not in FILE_ATTRIBUTES:
            raise GraphValidationError(
                f"{config.describe()} tests file attribute '{item.key}', which files do not "
                f"have (they have: {', '.join(FILE_ATTRIBUTES)})"
            )
        if item.comparison_operator not in OPERATORS:
            raise GraphValidationError(
                f"{config.describe()} uses unknown comparison operator "
                f"'{item.comparison_operator}' on file attribute '{item.key}'"
            )


# How the outer operator combines the per-file results of sub-conditions.
_FILE_OPERATORS = frozenset({"contains", "not contains", "all of"})


def _file_matches(file: Any, sub: SubVariableCondition, pool: VariablePool) -> bool:
    if not isinstance(file, dict):
        return False
    results = []
    for item in sub.conditions:
        actual = file_attribute(file, item.key)
        expected: Any = pool.render(item.value) if isinstance(item.value, str) else item.value
        if item.key == "extension":
            expected = _dotted(expected)
        operator = item.comparison_operator
        results.append(evaluate(operator, actual, None if operator in UNARY else expected))
    return all(results) if sub.logical_operator == "and" else any(results)


def _dotted(expected: Any) -> Any:
    if isinstance(expected, list):
        return [_dotted(item) for item in expected]
    if isinstance(expected, str) and expected and not expected.startswith("."):
        return "." + expected.lower()
    return expected.lower() if isinstance(expected, str) else expected


def _check_files(
    condition: Condition, sub: SubVariableCondition, pool: VariablePool, log: list[dict[str, Any]]
) -> bool:
    value = pool.get(condition.variable_selector)
    files = value if isinstance(value, list) else [] if value is None else [value]
    matches = [_file_matches(file, sub, pool) for file in files]
    operator = condition.comparison_operator
    if operator == "all of":
        result = bool(matches) and all(matches)
    else:
        result = any(matches) if operator == "contains" else not any(matches)
    log.append(
        {
            "selector": condition.variable_selector,
            "operator": operator,
            "sub_conditions": [item.model_dump() for item in sub.conditions],
            "matching_files": sum(matches),
            "result": result,
        }
    )
    return result


def check_condition(condition: Condition, pool: VariablePool, log: list[dict[str, Any]]) -> bool:
    """Whether ``condition`` holds; appends what was compared to ``log``."""
    sub = condition.sub_variable_condition
    if sub is not None and sub.conditions:
        return _check_files(condition, sub, pool, log)
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
