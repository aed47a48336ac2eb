"""The workflow engine: ``run()`` yields events, ``stop()`` aborts, ``resume()`` continues.

::

    engine = GraphEngine(app.graph, pool, registry=default_registry(), services=services)
    for event in engine.run():
        ...

Independent branches run in parallel on a bounded thread pool (see :mod:`execution`); layers
(:mod:`layers`) see the run start, every event and the run end, and may abort, fail or pause it.
A paused run ends with GraphRunPaused carrying a checkpoint; ``resume(checkpoint)`` on an engine
built over the same graph finishes it. The engine itself does no I/O; its nodes do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator, Sequence
from typing import Any, Protocol

from relay.workflow.checkpoint import CHECKPOINT_VERSION, RunCheckpoint
from relay.workflow.config import EngineConfig
from relay.workflow.errors import CheckpointError, WorkflowError
from relay.workflow.events import (
    GraphEngineEvent,
    GraphRunAbortedEvent,
    GraphRunFailedEvent,
    GraphRunPartialSucceededEvent,
    GraphRunPausedEvent,
    GraphRunResumedEvent,
    GraphRunStartedEvent,
    GraphRunSucceededEvent,
    NodeRunStartedEvent,
    NodeRunSucceededEvent,
    utcnow,
)
from relay.workflow.execution import Blueprint, GraphExecution, LevelPlan
from relay.workflow.graph import Graph, NodeConfig
from relay.workflow.layers import EngineControl, GraphEngineLayer
from relay.workflow.nodes.base import Node, NodeServices, RunInfo
from relay.workflow.response import ResponseCoordinator
from relay.workflow.runtime_state import RunState
from relay.workflow.stop import StopToken
from relay.workflow.variables import VariablePool

logger = logging.getLogger("relay.workflow")


class NodeFactory(Protocol):
    """Builds node objects from their config (the node registry)."""

    def create(self, config: NodeConfig) -> Node:
        """A node for ``config``; raises UnsupportedNodeTypeError for unknown types."""
        ...


class GraphEngine:
    """Runs one workflow graph once (``run``) or continues it from a checkpoint (``resume``)."""

    def __init__(
        self,
        graph: Graph,
        pool: VariablePool,
        *,
        registry: NodeFactory,
        services: NodeServices,
        run_info: RunInfo | None = None,
        config: EngineConfig | None = None,
        layers: Sequence[GraphEngineLayer] = (),
    ) -> None:
        self.graph = graph
        self.pool = pool
        self.run_info = run_info or RunInfo()
        self.config = config or EngineConfig()
        self.layers = list(layers)
        nodes = {config.id: registry.create(config) for _, config in graph.walk()}
        plans: dict[str | None, LevelPlan] = {None: LevelPlan(graph, nodes)}
        for level, node in graph.walk():
            if node.id in level.children:
                plans[node.id] = LevelPlan(level.children[node.id], nodes)
        self._blueprint = Blueprint(nodes, plans, services, self.run_info, self.config)
        self._stop = StopToken()
        self._abort_reason: str | None = None
        self._forced_error: str | None = None
        self._pause_reason: str | None = None
        self._execution: GraphExecution | None = None
        self._state: RunState | None = None
        self._slice_started = 0.0
        self._used = False
        self.resumed = False

    # --- entry points -------------------------------------------------------------------------

    def run(self) -> Generator[GraphEngineEvent, None, None]:
        """Run the graph from its start node, yielding every event; the last one ends the run.

        Closing the generator early stops the run's nodes.
        """
        self._claim()
        state = RunState(self.graph)
        state.start()
        return self._drive(state, None)

    def resume(self, checkpoint: RunCheckpoint) -> Generator[GraphEngineEvent, None, None]:
        """Continue a paused run; the pool given to the constructor is replaced by the saved one."""
        self._claim()
        if checkpoint.version != CHECKPOINT_VERSION:
            raise CheckpointError(f"checkpoint version {checkpoint.version} is not supported")
        if checkpoint.graph_fingerprint != self.graph.fingerprint:
            raise CheckpointError("the checkpoint was taken on a different workflow graph")
        if self.run_info.run_id and checkpoint.run_id != self.run_info.run_id:
            raise CheckpointError(
                f"the checkpoint belongs to run {checkpoint.run_id!r}, not {self.run_info.run_id!r}"
            )
        self.pool = VariablePool.from_dict(checkpoint.variable_pool)
        state = RunState.restore(self.graph, checkpoint.model_dump(), checkpoint.elapsed)
        self.resumed = True
        return self._drive(state, checkpoint)

    def stop(self, reason: str = "stopped by user") -> None:
        """Abort: no node starts after this, running nodes are told to stop; ends Aborted."""
        if self._abort_reason is None:
            self._abort_reason = reason
        self._stop.set(reason)

    # --- what layers may do ---------------------------------------------------------------------

    def fail(self, error: str) -> None:
        """End the run as failed with ``error`` (execution limits use this)."""
        if self._forced_error is None:
            self._forced_error = error
        self._stop.set(error)

    def pause(self, reason: str) -> None:
        """Stop at the next node boundary and end with a checkpoint (if work remains)."""
        self._pause_reason = reason
        if self._execution is not None:
            self._execution.request_pause()

    @property
    def run_id(self) -> str:
        """The run's id (``RunInfo.run_id``)."""
        return self.run_info.run_id

    @property
    def steps(self) -> int:
        """Node runs so far, iteration items included, across resumed slices."""
        return self._state.steps if self._state else 0

    @property
    def total_tokens(self) -> int:
        """Tokens used so far."""
        return self._state.total_tokens if self._state else 0

    @property
    def exceptions_count(self) -> int:
        """Node failures handled by an error strategy so far."""
        return self._state.exceptions_count if self._state else 0

    @property
    def elapsed(self) -> float:
        """Seconds of run time, earlier slices included."""
        if self._state is None:
            return 0.0
        return self._state.elapsed_before + (time.monotonic() - self._slice_started)

    # --- the run --------------------------------------------------------------------------------

    def _claim(self) -> None:
        if self._used:
            raise WorkflowError("a GraphEngine runs once; build a new one for another run")
        self._used = True

    def _drive(
        self, state: RunState, checkpoint: RunCheckpoint | None
    ) -> Generator[GraphEngineEvent, None, None]:
        self._state = state
        self._slice_started = time.monotonic()
        plan = self._blueprint.plans[None]
        execution = GraphExecution(
            self._blueprint, plan, self.pool, self._stop, state=state, on_idle=self._idle
        )
        response = ResponseCoordinator(
            self.graph, self._blueprint.nodes, state, self.pool, execution.fields
        )
        if checkpoint is not None:
            response.restore(checkpoint.response)
        execution.response = response
        self._execution = execution
        if self._pause_reason is not None:
            execution.request_pause()
        control: EngineControl = self
        for layer in self.layers:
            self._call(layer.initialize, control)
        for layer in self.layers:
            self._call(layer.on_graph_start)
        first: GraphEngineEvent = (
            GraphRunResumedEvent(steps=state.steps) if checkpoint else GraphRunStartedEvent()
        )
        finished = False
        try:
            yield self._seen(first)
            for event in execution.events():
                if isinstance(event, NodeRunStartedEvent):
                    state.steps += 1
                elif isinstance(event, NodeRunSucceededEvent):
                    state.total_tokens += int(event.metadata.get("total_tokens") or 0)
                yield self._seen(event)
            final = self._final_event(execution, state, response)
            self._seen(final)
            for layer in self.layers:
                self._call(layer.on_graph_end, final)
            finished = True
            yield final
        finally:
            if not finished:
                # The consumer stopped reading: nothing may keep running on its behalf.
                self._stop.set("the run's consumer went away")

    def _outputs(self, state: RunState, response: ResponseCoordinator) -> dict[str, Any]:
        outputs = dict(state.end_outputs)
        if response.has_answer:
            outputs["answer"] = response.answer_text
        return outputs

    def _final_event(
        self, execution: GraphExecution, state: RunState, response: ResponseCoordinator
    ) -> GraphEngineEvent:
        outputs = self._outputs(state, response)
        if execution.stopped:
            if self._forced_error is not None:
                return GraphRunFailedEvent(
                    error=self._forced_error, exceptions_count=state.exceptions_count
                )
            return GraphRunAbortedEvent(reason=self._abort_reason, outputs=outputs)
        if execution.error is not None:
            return GraphRunFailedEvent(
                error=execution.error, exceptions_count=state.exceptions_count
            )
        if execution.paused:
            return GraphRunPausedEvent(
                reason=self._pause_reason or "paused",
                checkpoint=self._checkpoint(state, response),
            )
        if state.exceptions_count:
            return GraphRunPartialSucceededEvent(
                exceptions_count=state.exceptions_count, outputs=outputs
            )
        return GraphRunSucceededEvent(outputs=outputs)

    def _checkpoint(self, state: RunState, response: ResponseCoordinator) -> RunCheckpoint:
        return RunCheckpoint(
            run_id=self.run_info.run_id,
            graph_fingerprint=self.graph.fingerprint,
            created_at=utcnow(),
            variable_pool=self.pool.to_dict(),
            elapsed=self.elapsed,
            response=response.to_dict(),
            **state.to_dict(),
        )

    def _seen(self, event: GraphEngineEvent) -> GraphEngineEvent:
        for layer in self.layers:
            self._call(layer.on_event, event)
        return event

    def _idle(self) -> None:
        for layer in self.layers:
            self._call(layer.on_idle)

    @staticmethod
    def _call(hook: Any, *args: Any) -> None:
        # A broken layer (a store that is down) must not break the run it observes.
        try:
            hook(*args)
        except Exception:
            logger.exception("workflow layer hook %s failed", getattr(hook, "__qualname__", hook))
