"""loop: runs its body round after round until a break condition holds, a loop-end node runs, or
``loop_count`` rounds have run.

Loop variables live at ``[loop_id, label]``; body nodes read them and an assigner inside the body
updates them, and each round sees the values the previous round left. Break conditions are
checked before the first round (a loop may run no round at all) and after every round, against
the loop variables and the outputs of the round's nodes, as Dify does. Outputs: each loop
variable by label and ``loop_round`` (rounds run).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from relay.workflow.errors import GraphValidationError, NodeError, NodeStopped
from relay.workflow.events import (
    LoopRunFailedEvent,
    LoopRunNextEvent,
    LoopRunStartedEvent,
    LoopRunSucceededEvent,
    NodeRunSucceededEvent,
)
from relay.workflow.graph import NodeConfig
from relay.workflow.nodes.base import Node, NodeContext, NodeRun, NodeRunResult, parse_data
from relay.workflow.nodes.conditions import OPERATORS
from relay.workflow.nodes.if_else import Condition, check_condition
from relay.workflow.nodes.loop_start import LoopEndNode
from relay.workflow.variables import Selector, VariablePool, as_selector, template_references

MAX_LOOP_COUNT = 1000


class LoopVariable(BaseModel):
    """A variable the rounds share: a constant or the value of another variable to start with."""

    model_config = ConfigDict(extra="ignore")

    label: str = Field(min_length=1)
    var_type: str = "string"
    value_type: Literal["variable", "constant"] = "constant"
    value: Any = None


class LoopData(BaseModel):
    """loop node data."""

    model_config = ConfigDict(extra="ignore")

    loop_count: int = Field(ge=0, le=MAX_LOOP_COUNT)
    break_conditions: list[Condition] = Field(default_factory=list)
    logical_operator: Literal["and", "or"] = "and"
    loop_variables: list[LoopVariable] | None = None
    start_node_id: str | None = None


def _constant(variable: LoopVariable) -> Any:
    value = variable.value
    kind = variable.var_type
    if kind == "number" and isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise NodeError(f"loop variable '{variable.label}' must be a number") from None
        return int(number) if number.is_integer() and "." not in value else number
    if (kind == "object" or kind.startswith("array")) and isinstance(value, str):
        try:
            return json.loads(value) if value.strip() else ({} if kind == "object" else [])
        except json.JSONDecodeError:
            raise NodeError(f"loop variable '{variable.label}' is not valid JSON") from None
    if kind == "boolean" and isinstance(value, str):
        return value.strip().lower() == "true"
    return value


class LoopNode(Node):
    """Outputs its loop variables and ``loop_round``; emits LoopRun* events around the rounds."""

    node_type = "loop"

    def __init__(self, config: NodeConfig) -> None:
        super().__init__(config)
        self.data = parse_data(LoopData, config)
        for condition in self.data.break_conditions:
            if condition.comparison_operator not in OPERATORS:
                raise GraphValidationError(
                    f"{config.describe()} uses unknown comparison operator "
                    f"'{condition.comparison_operator}' in a break condition"
                )

    @property
    def variables(self) -> list[LoopVariable]:
        """The loop variables in declaration order."""
        return self.data.loop_variables or []

    def selectors(self) -> list[Selector]:
        found: list[Selector] = []
        for variable in self.variables:
            if variable.value_type == "variable" and isinstance(variable.value, list):
                found.append(as_selector(variable.value))
        for condition in self.data.break_conditions:
            # Break conditions may read body nodes, which only exist while a round runs.
            if isinstance(condition.value, str):
                found.extend(template_references(condition.value))
        return [s for s in found if s and s[0] != self.id]

    def declared_outputs(self) -> list[str]:
        return [v.label for v in self.variables] + ["loop_round"]

    def _initial(self, pool: VariablePool) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for variable in self.variables:
            if variable.value_type == "variable":
                selector = variable.value if isinstance(variable.value, list) else []
                if not pool.has(selector):
                    raise NodeError(
                        f"loop variable '{variable.label}' starts from "
                        f"'{'.'.join(map(str, selector))}', which has no value"
                    )
                values[variable.label] = pool.get(selector)
            else:
                values[variable.label] = _constant(variable)
        return values

    def _breaks(self, pool: VariablePool) -> bool:
        if not self.data.break_conditions:
            return False
        log: list[dict[str, Any]] = []
        results = [check_condition(c, pool, log) for c in self.data.break_conditions]
        return all(results) if self.data.logical_operator == "and" else any(results)

    def run(self, ctx: NodeContext) -> NodeRun:
        if ctx.subgraphs is None:
            raise NodeError("loop needs the engine's subgraph runner")
        fields = dict(ctx.event_fields)
        values = self._initial(ctx.pool)
        inputs: dict[str, Any] = {"loop_count": self.data.loop_count, **values}
        yield LoopRunStartedEvent(
            **fields, inputs=inputs, metadata={"loop_length": self.data.loop_count}
        )
        state = ctx.pool.child()
        for label, value in values.items():
            state.add((self.id, label), value)
        rounds = 0
        reason = "loop_completed"
        history: dict[str, dict[str, Any]] = {}
        stop_now = self._breaks(state)
        while not stop_now and rounds < self.data.loop_count:
            ctx.stop.raise_if_set()
            if rounds:
                yield LoopRunNextEvent(**fields, index=rounds, pre_loop_output=dict(values))
            round_pool = state.child()
            execution = ctx.subgraphs.execution(self.id, round_pool, rounds, ctx.stop.child())
            reached_end = False
            for event in execution.events():
                if (
                    isinstance(event, NodeRunSucceededEvent)
                    and event.node_type == LoopEndNode.node_type
                ):
                    reached_end = True
                yield event
            ctx.stop.raise_if_set()
            values = {v.label: round_pool.get((self.id, v.label)) for v in self.variables}
            history[str(rounds)] = dict(values)
            rounds += 1
            if execution.error is not None:
                error = f"loop round {rounds - 1} failed: {execution.error}"
                yield LoopRunFailedEvent(
                    **fields, inputs=inputs, outputs=dict(values), steps=rounds, error=error
                )
                raise NodeError(error)
            for label, value in values.items():
                state.add((self.id, label), value)
            if reached_end:
                reason = "loop_end_node"
                break
            if self._breaks(round_pool):
                reason = "loop_break"
                break
        else:
            if stop_now:
                reason = "loop_break"
        if ctx.stop.is_set():
            raise NodeStopped(ctx.stop.reason or "stopped")
        outputs = {**values, "loop_round": rounds}
        metadata = {"completed_reason": reason, "loop_variable_map": history}
        yield LoopRunSucceededEvent(
            **fields, inputs=inputs, outputs=outputs, metadata=metadata, steps=rounds
        )
        return NodeRunResult(outputs=outputs, inputs=inputs, metadata=metadata)
