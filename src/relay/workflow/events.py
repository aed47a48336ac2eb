"""The events a run yields: Dify's graph engine event model as frozen, typed pydantic models.

Every event is JSON-serialisable (``event.model_dump(mode="json")``), which is what the
streaming layer publishes. Node events carry the node execution id, the node's id, type and
title, the parallel branch and iteration they ran in, timings, inputs, outputs and token usage.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from relay.workflow.checkpoint import RunCheckpoint


def utcnow() -> datetime:
    """Timezone-aware now, the timestamp every event uses."""
    return datetime.now(UTC)


class GraphEngineEvent(BaseModel):
    """Base of every event the engine yields."""

    model_config = ConfigDict(frozen=True)


# --- graph run -------------------------------------------------------------------------------


class GraphRunStartedEvent(GraphEngineEvent):
    """The run started (first event of :meth:`GraphEngine.run`)."""


class GraphRunResumedEvent(GraphEngineEvent):
    """A paused run continues from a checkpoint (first event of :meth:`GraphEngine.resume`)."""

    steps: int = Field(description="node runs already done before this slice")


class GraphRunSucceededEvent(GraphEngineEvent):
    """Every node that could run ran and none failed."""

    outputs: dict[str, Any] = Field(default_factory=dict)


class GraphRunFailedEvent(GraphEngineEvent):
    """A node failed without an error strategy, or a limit was exceeded."""

    error: str
    exceptions_count: int = 0


class GraphRunPartialSucceededEvent(GraphEngineEvent):
    """The run finished, but some nodes failed and were handled by their error strategy."""

    exceptions_count: int
    outputs: dict[str, Any] = Field(default_factory=dict)


class GraphRunAbortedEvent(GraphEngineEvent):
    """The run was stopped on request; always the last event."""

    reason: str | None = None
    outputs: dict[str, Any] = Field(default_factory=dict)


class GraphRunPausedEvent(GraphEngineEvent):
    """The run stopped at a node boundary (time slice used up); resume from ``checkpoint``."""

    reason: str
    checkpoint: RunCheckpoint


# --- nodes -----------------------------------------------------------------------------------


class NodeEventBase(GraphEngineEvent):
    """Fields every node event carries."""

    id: str = Field(description="node execution id")
    node_id: str
    node_type: str
    node_title: str = ""
    start_at: datetime
    parallel_id: str | None = None
    parallel_start_node_id: str | None = None
    parent_parallel_id: str | None = None
    parent_parallel_start_node_id: str | None = None
    in_iteration_id: str | None = Field(None, description="node id of the enclosing iteration")
    iteration_index: int | None = None


class NodeRunStartedEvent(NodeEventBase):
    """A node started running."""

    predecessor_node_id: str | None = None


class NodeRunStreamChunkEvent(NodeEventBase):
    """A piece of streamed output, attributed to the answer/end node that shows it."""

    selector: list[str] = Field(description="the variable this chunk belongs to")
    chunk: str
    is_final: bool = False


class NodeRunRetrieverResourceEvent(NodeEventBase):
    """Knowledge retrieval found these segments (shown to users as citations)."""

    resources: list[dict[str, Any]]
    context: str = ""


class _NodeFinished(NodeEventBase):
    inputs: dict[str, Any] = Field(default_factory=dict)
    process_data: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="token usage (total_tokens, ...), provider, model"
    )
    finished_at: datetime
    elapsed_time: float = Field(description="seconds")


class NodeRunSucceededEvent(_NodeFinished):
    """A node finished; its outputs are in the variable pool."""


class NodeRunFailedEvent(_NodeFinished):
    """A node failed and had no error strategy: the run fails."""

    error: str


class NodeRunExceptionEvent(_NodeFinished):
    """A node failed and its error strategy handled it (default value or fail branch)."""

    error: str
    strategy: str


class NodeRunRetryEvent(NodeEventBase):
    """An attempt failed; the node runs again after its retry interval."""

    retry_index: int = Field(description="which retry is about to run (1-based)")
    error: str


# --- parallel branches -------------------------------------------------------------------------


class _ParallelBranchEvent(GraphEngineEvent):
    parallel_id: str
    parallel_start_node_id: str
    parent_parallel_id: str | None = None
    parent_parallel_start_node_id: str | None = None
    in_iteration_id: str | None = None
    iteration_index: int | None = None


class ParallelBranchRunStartedEvent(_ParallelBranchEvent):
    """A branch of a fan-out started."""


class ParallelBranchRunSucceededEvent(_ParallelBranchEvent):
    """Every node of the branch finished."""


class ParallelBranchRunFailedEvent(_ParallelBranchEvent):
    """A node of the branch failed."""

    error: str


# --- iterations --------------------------------------------------------------------------------


class _IterationEvent(GraphEngineEvent):
    id: str = Field(description="node execution id of the iteration node")
    node_id: str
    node_type: str = "iteration"
    node_title: str = ""
    start_at: datetime
    parallel_id: str | None = None
    parallel_start_node_id: str | None = None
    in_iteration_id: str | None = None


class IterationRunStartedEvent(_IterationEvent):
    """An iteration node starts going over its list."""

    inputs: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)


class IterationRunNextEvent(_IterationEvent):
    """Item ``index`` starts."""

    index: int
    pre_iteration_output: Any = None


class IterationRunSucceededEvent(_IterationEvent):
    """All items ran; ``outputs['output']`` holds their results in item order."""

    inputs: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, Any] = Field(default_factory=dict)
    steps: int


class IterationRunFailedEvent(_IterationEvent):
    """An item failed under the ``terminated`` error mode."""

    inputs: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, Any] = Field(default_factory=dict)
    steps: int
    error: str


# --- loops -------------------------------------------------------------------------------------


class _LoopEvent(GraphEngineEvent):
    id: str = Field(description="node execution id of the loop node")
    node_id: str
    node_type: str = "loop"
    node_title: str = ""
    start_at: datetime
    parallel_id: str | None = None
    parallel_start_node_id: str | None = None
    in_iteration_id: str | None = None


class LoopRunStartedEvent(_LoopEvent):
    """A loop node starts; ``inputs`` holds its loop count and the initial loop variables."""

    inputs: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)


class LoopRunNextEvent(_LoopEvent):
    """Round ``index`` starts (0-based); ``pre_loop_output`` holds the loop variables so far."""

    index: int
    pre_loop_output: Any = None


class LoopRunSucceededEvent(_LoopEvent):
    """The loop ended: a break condition held, a loop-end node ran, or the rounds ran out."""

    inputs: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    steps: int


class LoopRunFailedEvent(_LoopEvent):
    """A round failed."""

    inputs: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, Any] = Field(default_factory=dict)
    steps: int
    error: str


# --- agent nodes -------------------------------------------------------------------------------


class AgentLogEvent(NodeEventBase):
    """A step of an agent node (a round, or one tool call in it) started or finished; steps
    nest through ``parent_id``, as in Dify's agent logs."""

    log_id: str
    label: str
    parent_id: str | None = None
    status: str = Field(description="start, success or error")
    data: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    log_metadata: dict[str, Any] = Field(default_factory=dict)


class AgentThoughtEvent(NodeEventBase):
    """One finished round of an agent: what the model thought, the tools it called (``tool``:
    names joined by ``;``, ``tool_input``: JSON by tool name) and what they returned
    (``observation``: JSON by tool name), as Dify's agent thoughts carry them."""

    thought_id: str
    position: int
    thought: str = ""
    observation: str = ""
    tool: str = ""
    tool_input: str = ""
    tool_labels: dict[str, Any] = Field(default_factory=dict)


GRAPH_END_EVENTS = (
    GraphRunSucceededEvent,
    GraphRunFailedEvent,
    GraphRunPartialSucceededEvent,
    GraphRunAbortedEvent,
    GraphRunPausedEvent,
)
NODE_END_EVENTS = (NodeRunSucceededEvent, NodeRunFailedEvent, NodeRunExceptionEvent)
