"""iteration: runs its body once per list item, in order or in parallel; outputs keep item order.

Each item runs in its own overlay of the variable pool holding ``[iteration_id, item]`` and
``[iteration_id, index]``, so parallel items never see each other's values. Error modes (as in
Dify): ``terminated`` fails the iteration at the first failing item (stopping the others),
``continue-on-error`` puts None in that item's place, ``remove-abnormal-output`` leaves it out.
"""

from __future__ import annotations

import queue
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from relay.workflow.errors import GraphValidationError, NodeError, NodeStopped
from relay.workflow.events import (
    GraphEngineEvent,
    IterationRunFailedEvent,
    IterationRunNextEvent,
    IterationRunStartedEvent,
    IterationRunSucceededEvent,
)
from relay.workflow.graph import NodeConfig
from relay.workflow.nodes.base import (
    Node,
    NodeContext,
    NodeRun,
    NodeRunResult,
    SubgraphExecution,
    SubgraphRunner,
    parse_data,
)
from relay.workflow.stop import StopToken
from relay.workflow.variables import Selector, VariablePool, as_selector


class IterationData(BaseModel):
    """iteration node data."""

    model_config = ConfigDict(extra="ignore")

    iterator_selector: list[str]
    output_selector: list[str]
    output_type: str | None = None
    start_node_id: str | None = None
    is_parallel: bool = False
    parallel_nums: int = Field(10, ge=1)
    error_handle_mode: Literal["terminated", "continue-on-error", "remove-abnormal-output"] = (
        "terminated"
    )


@dataclass(frozen=True)
class _ItemDone:
    index: int
    error: str | None
    output: Any
    ran: bool = True


class IterationNode(Node):
    """Outputs ``output``: one value per item, read from ``output_selector`` in the body."""

    node_type = "iteration"

    def __init__(self, config: NodeConfig) -> None:
        super().__init__(config)
        self.data = parse_data(IterationData, config)
        if len(self.data.output_selector) < 2 or len(self.data.iterator_selector) < 2:
            raise GraphValidationError(f"{config.describe()} needs iterator and output selectors")

    def selectors(self) -> list[Selector]:
        return [as_selector(self.data.iterator_selector)]

    def declared_outputs(self) -> list[str]:
        # item and index are read by the body's nodes while an item runs.
        return ["output", "item", "index"]

    def run(self, ctx: NodeContext) -> NodeRun:
        if ctx.subgraphs is None:
            raise NodeError("iteration needs the engine's subgraph runner")
        items = ctx.pool.get(self.data.iterator_selector)
        if items is None:
            items = []
        if not isinstance(items, list):
            raise NodeError(
                f"iteration needs an array at {'.'.join(self.data.iterator_selector)}, "
                f"got {type(items).__name__}"
            )
        fields = dict(ctx.event_fields)
        inputs = {"iterator_selector": items}
        yield IterationRunStartedEvent(
            **fields, inputs=inputs, metadata={"iterator_length": len(items)}
        )
        if self.data.is_parallel and len(items) > 1:
            done = yield from self._parallel(ctx, ctx.subgraphs, items, fields)
        else:
            done = yield from self._sequential(ctx, ctx.subgraphs, items, fields)
        outputs: list[Any] = []
        failed: _ItemDone | None = None
        for result in sorted(done, key=lambda d: d.index):
            if result.error is not None:
                failed = failed or result
                if self.data.error_handle_mode == "continue-on-error":
                    outputs.append(None)
            elif result.ran:
                outputs.append(result.output)
        if ctx.stop.is_set():
            raise NodeStopped(ctx.stop.reason or "stopped")
        if failed is not None and self.data.error_handle_mode == "terminated":
            error = f"iteration item {failed.index} failed: {failed.error}"
            yield IterationRunFailedEvent(
                **fields, inputs=inputs, outputs={"output": outputs}, steps=len(done), error=error
            )
            raise NodeError(error)
        yield IterationRunSucceededEvent(
            **fields, inputs=inputs, outputs={"output": outputs}, steps=len(items)
        )
        return NodeRunResult(outputs={"output": outputs}, inputs=inputs)

    def _start_item(
        self, ctx: NodeContext, runner: SubgraphRunner, index: int, item: Any, stop: StopToken
    ) -> tuple[SubgraphExecution, VariablePool]:
        pool = ctx.pool.child()
        pool.add((self.id, "item"), item)
        pool.add((self.id, "index"), index)
        return runner.execution(self.id, pool, index, stop), pool

    def _sequential(
        self, ctx: NodeContext, runner: SubgraphRunner, items: list[Any], fields: dict[str, Any]
    ) -> Generator[GraphEngineEvent, None, list[_ItemDone]]:
        done: list[_ItemDone] = []
        previous: Any = None
        for index, item in enumerate(items):
            ctx.stop.raise_if_set()
            yield IterationRunNextEvent(**fields, index=index, pre_iteration_output=previous)
            execution, pool = self._start_item(ctx, runner, index, item, ctx.stop.child())
            yield from execution.events()
            ctx.stop.raise_if_set()
            result = _ItemDone(index, execution.error, pool.get(self.data.output_selector))
            done.append(result)
            previous = result.output
            if result.error is not None and self.data.error_handle_mode == "terminated":
                break
        return done

    def _parallel(
        self, ctx: NodeContext, runner: SubgraphRunner, items: list[Any], fields: dict[str, Any]
    ) -> Generator[GraphEngineEvent, None, list[_ItemDone]]:
        results: queue.SimpleQueue[object] = queue.SimpleQueue()
        items_stop = ctx.stop.child()
        terminate = self.data.error_handle_mode == "terminated"

        def work(index: int, item: Any) -> None:
            try:
                if items_stop.is_set():
                    results.put(_ItemDone(index, None, None, ran=False))
                    return
                results.put(IterationRunNextEvent(**fields, index=index))
                execution, pool = self._start_item(ctx, runner, index, item, items_stop.child())
                for event in execution.events():
                    results.put(event)
                ran = not items_stop.is_set() or execution.error is not None
                output = pool.get(self.data.output_selector)
                results.put(_ItemDone(index, execution.error, output, ran=ran))
            except BaseException as exc:  # keep the count right whatever happens
                results.put(_ItemDone(index, f"{type(exc).__name__}: {exc}", None))

        done: list[_ItemDone] = []
        # The engine caps parallel_nums, as Dify does, so one app cannot take every thread.
        workers = min(self.data.parallel_nums, runner.max_parallelism, len(items))
        executor = ThreadPoolExecutor(workers, thread_name_prefix="relay-iteration")
        try:
            for index, item in enumerate(items):
                executor.submit(work, index, item)
            while len(done) < len(items):
                got = results.get()
                if isinstance(got, _ItemDone):
                    done.append(got)
                    if got.error is not None and terminate:
                        items_stop.set("another iteration item failed")
                elif isinstance(got, GraphEngineEvent):
                    yield got
        finally:
            if len(done) < len(items):
                items_stop.set("iteration closed")
            executor.shutdown(wait=True)
        return done
