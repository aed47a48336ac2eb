"""Layers: code that watches a run (start, every event, end) and may stop, fail or pause it.

Provided here: :class:`ExecutionLimitsLayer` (max steps, max time), :class:`PersistenceLayer`
(run and node execution records through a :class:`WorkflowRunStore`) and
:class:`TimeSliceLayer` (pause at a node boundary when a :class:`SliceController` says the
run's time slice is used up, leaving a checkpoint to resume from). A layer that raises is
logged and ignored: observers must not break the run they observe.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from relay.workflow.config import ExecutionLimits
from relay.workflow.events import (
    GraphEngineEvent,
    GraphRunAbortedEvent,
    GraphRunFailedEvent,
    GraphRunPartialSucceededEvent,
    GraphRunPausedEvent,
    GraphRunSucceededEvent,
    NodeEventBase,
    NodeRunExceptionEvent,
    NodeRunFailedEvent,
    NodeRunRetryEvent,
    NodeRunStartedEvent,
    NodeRunSucceededEvent,
    utcnow,
)
from relay.workflow.run_store import (
    NODE_EXCEPTION,
    NODE_FAILED,
    NODE_RETRY,
    NODE_SUCCEEDED,
    RUN_FAILED,
    RUN_PARTIAL_SUCCEEDED,
    RUN_RUNNING,
    RUN_STOPPED,
    RUN_SUCCEEDED,
    NodeExecutionRecord,
    WorkflowRunRecord,
    WorkflowRunStore,
)
from relay.workflow.variables import VariablePool


class EngineControl(Protocol):
    """What a layer may read from and do to the run it is attached to."""

    pool: VariablePool
    resumed: bool

    @property
    def run_id(self) -> str:
        """The run's id."""
        ...

    @property
    def steps(self) -> int:
        """Node runs so far (iteration items included, earlier slices included)."""
        ...

    @property
    def elapsed(self) -> float:
        """Seconds of run time so far."""
        ...

    @property
    def total_tokens(self) -> int:
        """Tokens used so far."""
        ...

    @property
    def exceptions_count(self) -> int:
        """Failures handled by error strategies so far."""
        ...

    def stop(self, reason: str = ...) -> None:
        """Abort the run."""
        ...

    def fail(self, error: str) -> None:
        """End the run as failed."""
        ...

    def pause(self, reason: str) -> None:
        """Stop at the next node boundary with a checkpoint."""
        ...


class GraphEngineLayer:
    """Base class: override the hooks you need. Hooks run on the thread consuming the events."""

    control: EngineControl

    def initialize(self, control: EngineControl) -> None:
        """Attach to a run (called before ``on_graph_start``)."""
        self.control = control

    def on_graph_start(self) -> None:
        """The run (or a resumed slice of it) starts."""

    def on_event(self, event: GraphEngineEvent) -> None:
        """Every event, before the caller sees it."""

    def on_idle(self) -> None:
        """Called periodically while nodes run and no event arrives."""

    def on_graph_end(self, event: GraphEngineEvent) -> None:
        """The run (or slice) ended with ``event`` (succeeded, failed, aborted, paused...)."""


class ExecutionLimitsLayer(GraphEngineLayer):
    """Fails the run when it exceeds ``max_steps`` node runs or ``max_time`` seconds."""

    def __init__(self, limits: ExecutionLimits | None = None) -> None:
        self.limits = limits or ExecutionLimits()

    def on_event(self, event: GraphEngineEvent) -> None:
        if isinstance(event, NodeRunStartedEvent) and self.control.steps > self.limits.max_steps:
            self.control.fail(f"max steps exceeded: more than {self.limits.max_steps} node runs")
        self.on_idle()

    def on_idle(self) -> None:
        if self.control.elapsed > self.limits.max_time:
            self.control.fail(f"max execution time exceeded: {self.limits.max_time:g}s")


class SliceController(Protocol):
    """Decides, at node boundaries, whether a run should give way to others (fair scheduling)."""

    def should_yield(self, elapsed: float) -> bool:
        """True to pause now; ``elapsed`` is the seconds this slice has run."""
        ...


@dataclass
class FixedTimeSlice:
    """Yield once a slice has run ``seconds``."""

    seconds: float

    def should_yield(self, elapsed: float) -> bool:
        """Whether the slice is used up."""
        return elapsed >= self.seconds


class TimeSliceLayer(GraphEngineLayer):
    """Pauses the run at a node boundary when ``controller.should_yield`` says so.

    The run then ends with GraphRunPaused carrying a checkpoint; ``GraphEngine.resume`` on it
    continues where it stopped. Boundaries are the ends of top-level nodes (an iteration runs
    to its end within one slice).
    """

    def __init__(self, controller: SliceController) -> None:
        self.controller = controller
        self._started = 0.0

    def on_graph_start(self) -> None:
        self._started = time.monotonic()

    def on_event(self, event: GraphEngineEvent) -> None:
        if (
            isinstance(event, NodeRunSucceededEvent | NodeRunExceptionEvent)
            and event.in_iteration_id is None
            and self.controller.should_yield(time.monotonic() - self._started)
        ):
            self.control.pause("time slice used up")


@dataclass(frozen=True)
class RunRecordInfo:
    """What the run record needs beyond what the engine knows."""

    tenant_id: str
    app_id: str
    workflow_id: str = ""
    triggered_from: str = "app-run"
    version: str = "draft"
    graph: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    created_by_role: str = "account"
    created_by: str = ""


class PersistenceLayer(GraphEngineLayer):
    """Writes the run record and a record per node execution as the run goes."""

    def __init__(self, store: WorkflowRunStore, info: RunRecordInfo) -> None:
        self.store = store
        self.info = info
        self._run: WorkflowRunRecord | None = None
        self._open: dict[str, NodeExecutionRecord] = {}

    def on_graph_start(self) -> None:
        run_id = self.control.run_id or str(uuid.uuid4())
        existing = self.store.get_run(run_id) if self.control.resumed else None
        self._run = existing or WorkflowRunRecord(
            id=run_id,
            tenant_id=self.info.tenant_id,
            app_id=self.info.app_id,
            workflow_id=self.info.workflow_id,
            triggered_from=self.info.triggered_from,
            version=self.info.version,
            graph=self.info.graph,
            inputs=self.info.inputs,
            created_by_role=self.info.created_by_role,
            created_by=self.info.created_by,
            created_at=utcnow(),
        )
        self.store.save_run(self._run)

    def on_event(self, event: GraphEngineEvent) -> None:
        if not isinstance(event, NodeEventBase) or self._run is None:
            return
        if isinstance(event, NodeRunRetryEvent):
            opened = self._open.get(event.id)
            if opened is not None:
                now = utcnow()
                self.store.save_node_execution(
                    replace(
                        opened,
                        id=f"{event.id}:retry-{event.retry_index}",
                        status=NODE_RETRY,
                        error=event.error,
                        finished_at=now,
                    )
                )
                # The node's own record now stands for the next attempt.
                self._open[event.id] = replace(opened, created_at=now)
        elif isinstance(event, NodeRunStartedEvent):
            record = NodeExecutionRecord(
                id=event.id,
                tenant_id=self._run.tenant_id,
                app_id=self._run.app_id,
                workflow_run_id=self._run.id,
                index=self.control.steps,
                node_execution_id=event.id,
                node_id=event.node_id,
                node_type=event.node_type,
                title=event.node_title,
                created_at=event.start_at,
                execution_metadata=_placement(event),
            )
            self._open[event.id] = record
            self.store.save_node_execution(record)
        elif isinstance(event, NodeRunSucceededEvent | NodeRunFailedEvent | NodeRunExceptionEvent):
            self._close(event)

    def _close(
        self, event: NodeRunSucceededEvent | NodeRunFailedEvent | NodeRunExceptionEvent
    ) -> None:
        opened = self._open.pop(event.id, None)
        if opened is None:
            return
        status = {
            NodeRunSucceededEvent: NODE_SUCCEEDED,
            NodeRunFailedEvent: NODE_FAILED,
            NodeRunExceptionEvent: NODE_EXCEPTION,
        }[type(event)]
        self.store.save_node_execution(
            replace(
                opened,
                status=status,
                inputs=event.inputs,
                process_data=event.process_data,
                outputs=event.outputs,
                error=getattr(event, "error", None),
                elapsed_time=event.elapsed_time,
                execution_metadata={**opened.execution_metadata, **event.metadata},
                finished_at=event.finished_at,
            )
        )

    def on_graph_end(self, event: GraphEngineEvent) -> None:
        if self._run is None:
            return
        now = utcnow()
        for opened in self._open.values():
            # Nodes still open were interrupted by an abort or a failure elsewhere.
            self.store.save_node_execution(
                replace(opened, status=NODE_FAILED, error="interrupted", finished_at=now)
            )
        self._open.clear()
        record = replace(
            self._run,
            elapsed_time=self.control.elapsed,
            total_tokens=self.control.total_tokens,
            total_steps=self.control.steps,
            exceptions_count=self.control.exceptions_count,
        )
        if isinstance(event, GraphRunPausedEvent):
            self.store.save_checkpoint(record.id, event.checkpoint)
            self.store.save_run(replace(record, status=RUN_RUNNING))
            return
        self.store.save_checkpoint(record.id, None)
        if isinstance(event, GraphRunSucceededEvent):
            record = replace(record, status=RUN_SUCCEEDED, outputs=event.outputs)
        elif isinstance(event, GraphRunPartialSucceededEvent):
            record = replace(record, status=RUN_PARTIAL_SUCCEEDED, outputs=event.outputs)
        elif isinstance(event, GraphRunFailedEvent):
            record = replace(record, status=RUN_FAILED, error=event.error)
        elif isinstance(event, GraphRunAbortedEvent):
            record = replace(record, status=RUN_STOPPED, error=event.reason, outputs=event.outputs)
        self.store.save_run(replace(record, finished_at=now))


def _placement(event: NodeEventBase) -> dict[str, Any]:
    placement = {
        "parallel_id": event.parallel_id,
        "parallel_start_node_id": event.parallel_start_node_id,
        "iteration_id": event.in_iteration_id,
        "iteration_index": event.iteration_index,
    }
    return {key: value for key, value in placement.items() if value is not None}
