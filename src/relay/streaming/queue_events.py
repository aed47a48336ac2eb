"""Queue events: what a run streams to its clients, and the one conversion from engine events.

The names are Dify's (``QueueEvent``); each has a frozen, typed model whose ``event`` field is
its discriminator, so a stream entry parses back into the right model (:func:`parse_queue_event`).
Node, iteration and branch events carry the engine event's fields unchanged, so the conversion
(:func:`to_queue_event`) is a rename, never a reinterpretation. Pure: no I/O here.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from relay.workflow.events import (
    AgentLogEvent,
    AgentThoughtEvent,
    GraphEngineEvent,
    GraphRunAbortedEvent,
    GraphRunFailedEvent,
    GraphRunPartialSucceededEvent,
    GraphRunStartedEvent,
    GraphRunSucceededEvent,
    IterationRunFailedEvent,
    IterationRunNextEvent,
    IterationRunStartedEvent,
    IterationRunSucceededEvent,
    LoopRunFailedEvent,
    LoopRunNextEvent,
    LoopRunStartedEvent,
    LoopRunSucceededEvent,
    NodeRunExceptionEvent,
    NodeRunFailedEvent,
    NodeRunRetrieverResourceEvent,
    NodeRunRetryEvent,
    NodeRunStartedEvent,
    NodeRunStreamChunkEvent,
    NodeRunSucceededEvent,
    ParallelBranchRunFailedEvent,
    ParallelBranchRunStartedEvent,
    ParallelBranchRunSucceededEvent,
)


class QueueEvent(StrEnum):
    """Every kind of event a run's queue carries (Dify's names)."""

    LLM_CHUNK = "llm_chunk"
    TEXT_CHUNK = "text_chunk"
    AGENT_MESSAGE = "agent_message"
    MESSAGE_REPLACE = "message_replace"
    MESSAGE_END = "message_end"
    WORKFLOW_STARTED = "workflow_started"
    WORKFLOW_SUCCEEDED = "workflow_succeeded"
    WORKFLOW_FAILED = "workflow_failed"
    WORKFLOW_PARTIAL_SUCCEEDED = "workflow_partial_succeeded"
    NODE_STARTED = "node_started"
    NODE_SUCCEEDED = "node_succeeded"
    NODE_FAILED = "node_failed"
    NODE_EXCEPTION = "node_exception"
    NODE_RETRY = "node_retry"
    RETRIEVER_RESOURCES = "retriever_resources"
    ITERATION_START = "iteration_start"
    ITERATION_NEXT = "iteration_next"
    ITERATION_COMPLETED = "iteration_completed"
    LOOP_START = "loop_start"
    LOOP_NEXT = "loop_next"
    LOOP_COMPLETED = "loop_completed"
    PARALLEL_BRANCH_STARTED = "parallel_branch_started"
    PARALLEL_BRANCH_FINISHED = "parallel_branch_finished"
    ERROR = "error"
    PING = "ping"
    STOP = "stop"
    AGENT_LOG = "agent_log"
    AGENT_THOUGHT = "agent_thought"


class StopBy(StrEnum):
    """Why a stream ended with a stop event."""

    USER_MANUAL = "user-manual"
    TIMEOUT = "timeout"


class AppQueueEvent(BaseModel):
    """Base of every queue event."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event: QueueEvent


# --- message events ----------------------------------------------------------------------------


class LLMChunkEvent(AppQueueEvent):
    """A piece of an LLM reply outside a workflow (easy-UI apps)."""

    event: Literal[QueueEvent.LLM_CHUNK] = QueueEvent.LLM_CHUNK
    text: str


class TextChunkEvent(AppQueueEvent):
    """A piece of streamed output, attributed to the answer/end node showing it."""

    event: Literal[QueueEvent.TEXT_CHUNK] = QueueEvent.TEXT_CHUNK
    text: str
    from_variable_selector: list[str] | None = None
    node_id: str | None = None
    in_iteration_id: str | None = None


class AgentMessageEvent(AppQueueEvent):
    """A piece of an agent's reply."""

    event: Literal[QueueEvent.AGENT_MESSAGE] = QueueEvent.AGENT_MESSAGE
    text: str


class MessageReplaceEvent(AppQueueEvent):
    """Replace the answer streamed so far (output moderation)."""

    event: Literal[QueueEvent.MESSAGE_REPLACE] = QueueEvent.MESSAGE_REPLACE
    text: str
    reason: str = ""


class MessageEndEvent(AppQueueEvent):
    """A chat message is answered and recorded; the last event of a chat run."""

    event: Literal[QueueEvent.MESSAGE_END] = QueueEvent.MESSAGE_END
    message_id: str
    conversation_id: str
    answer: str = ""
    usage: dict[str, Any] = Field(default_factory=dict)


# --- workflow events ---------------------------------------------------------------------------


class WorkflowStartedEvent(AppQueueEvent):
    """The run started."""

    event: Literal[QueueEvent.WORKFLOW_STARTED] = QueueEvent.WORKFLOW_STARTED


class WorkflowSucceededEvent(AppQueueEvent):
    """The run finished and no node failed."""

    event: Literal[QueueEvent.WORKFLOW_SUCCEEDED] = QueueEvent.WORKFLOW_SUCCEEDED
    outputs: dict[str, Any] = Field(default_factory=dict)


class WorkflowFailedEvent(AppQueueEvent):
    """The run failed."""

    event: Literal[QueueEvent.WORKFLOW_FAILED] = QueueEvent.WORKFLOW_FAILED
    error: str
    exceptions_count: int = 0


class WorkflowPartialSucceededEvent(AppQueueEvent):
    """The run finished; some node failures were handled by error strategies."""

    event: Literal[QueueEvent.WORKFLOW_PARTIAL_SUCCEEDED] = QueueEvent.WORKFLOW_PARTIAL_SUCCEEDED
    exceptions_count: int
    outputs: dict[str, Any] = Field(default_factory=dict)


# --- node events (the engine's fields, unchanged) -------------------------------------------------


class _NodeEvent(AppQueueEvent):
    id: str = Field(description="node execution id")
    node_id: str
    node_type: str
    node_title: str = ""
    start_at: datetime
    parallel_id: str | None = None
    parallel_start_node_id: str | None = None
    parent_parallel_id: str | None = None
    parent_parallel_start_node_id: str | None = None
    in_iteration_id: str | None = None
    iteration_index: int | None = None


class NodeStartedEvent(_NodeEvent):
    """A node started."""

    event: Literal[QueueEvent.NODE_STARTED] = QueueEvent.NODE_STARTED
    predecessor_node_id: str | None = None


class _NodeFinishedEvent(_NodeEvent):
    inputs: dict[str, Any] = Field(default_factory=dict)
    process_data: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    finished_at: datetime
    elapsed_time: float


class NodeSucceededEvent(_NodeFinishedEvent):
    """A node finished."""

    event: Literal[QueueEvent.NODE_SUCCEEDED] = QueueEvent.NODE_SUCCEEDED


class NodeFailedEvent(_NodeFinishedEvent):
    """A node failed without an error strategy."""

    event: Literal[QueueEvent.NODE_FAILED] = QueueEvent.NODE_FAILED
    error: str


class NodeExceptionEvent(_NodeFinishedEvent):
    """A node failed and its error strategy handled it."""

    event: Literal[QueueEvent.NODE_EXCEPTION] = QueueEvent.NODE_EXCEPTION
    error: str
    strategy: str


class NodeRetryEvent(_NodeEvent):
    """A node attempt failed; it runs again."""

    event: Literal[QueueEvent.NODE_RETRY] = QueueEvent.NODE_RETRY
    retry_index: int
    error: str


class RetrieverResourcesEvent(_NodeEvent):
    """Knowledge retrieval found these segments (citations)."""

    event: Literal[QueueEvent.RETRIEVER_RESOURCES] = QueueEvent.RETRIEVER_RESOURCES
    resources: list[dict[str, Any]]
    context: str = ""


# --- iterations and parallel branches ------------------------------------------------------------


class _IterationEvent(AppQueueEvent):
    id: str = Field(description="node execution id of the iteration node")
    node_id: str
    node_type: str = "iteration"
    node_title: str = ""
    start_at: datetime
    parallel_id: str | None = None
    parallel_start_node_id: str | None = None
    in_iteration_id: str | None = None


class IterationStartEvent(_IterationEvent):
    """An iteration starts going over its list."""

    event: Literal[QueueEvent.ITERATION_START] = QueueEvent.ITERATION_START
    inputs: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)


class IterationNextEvent(_IterationEvent):
    """Item ``index`` starts."""

    event: Literal[QueueEvent.ITERATION_NEXT] = QueueEvent.ITERATION_NEXT
    index: int
    pre_iteration_output: Any = None


class IterationCompletedEvent(_IterationEvent):
    """The iteration ended; ``error`` is set when it failed."""

    event: Literal[QueueEvent.ITERATION_COMPLETED] = QueueEvent.ITERATION_COMPLETED
    inputs: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, Any] = Field(default_factory=dict)
    steps: int
    error: str | None = None


class _LoopEvent(AppQueueEvent):
    id: str = Field(description="node execution id of the loop node")
    node_id: str
    node_type: str = "loop"
    node_title: str = ""
    start_at: datetime
    parallel_id: str | None = None
    parallel_start_node_id: str | None = None
    in_iteration_id: str | None = None


class LoopStartEvent(_LoopEvent):
    """A loop starts its rounds."""

    event: Literal[QueueEvent.LOOP_START] = QueueEvent.LOOP_START
    inputs: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)


class LoopNextEvent(_LoopEvent):
    """Round ``index`` starts."""

    event: Literal[QueueEvent.LOOP_NEXT] = QueueEvent.LOOP_NEXT
    index: int
    pre_loop_output: Any = None


class LoopCompletedEvent(_LoopEvent):
    """The loop ended; ``error`` is set when a round failed."""

    event: Literal[QueueEvent.LOOP_COMPLETED] = QueueEvent.LOOP_COMPLETED
    inputs: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    steps: int
    error: str | None = None


class _BranchEvent(AppQueueEvent):
    parallel_id: str
    parallel_start_node_id: str
    parent_parallel_id: str | None = None
    parent_parallel_start_node_id: str | None = None
    in_iteration_id: str | None = None
    iteration_index: int | None = None


class ParallelBranchStartedEvent(_BranchEvent):
    """A branch of a fan-out started."""

    event: Literal[QueueEvent.PARALLEL_BRANCH_STARTED] = QueueEvent.PARALLEL_BRANCH_STARTED


class ParallelBranchFinishedEvent(_BranchEvent):
    """A branch ended; ``error`` is set when it failed."""

    event: Literal[QueueEvent.PARALLEL_BRANCH_FINISHED] = QueueEvent.PARALLEL_BRANCH_FINISHED
    error: str | None = None


# --- control events ------------------------------------------------------------------------------


class ErrorEvent(AppQueueEvent):
    """The run cannot go on (worker lost, infrastructure failure, quota); always the last event."""

    event: Literal[QueueEvent.ERROR] = QueueEvent.ERROR
    code: str
    message: str


class PingEvent(AppQueueEvent):
    """Keeps an idle stream open; never stored in a run's stream."""

    event: Literal[QueueEvent.PING] = QueueEvent.PING


class StopEvent(AppQueueEvent):
    """The run was stopped (or the listener gave up at its time limit)."""

    event: Literal[QueueEvent.STOP] = QueueEvent.STOP
    stopped_by: StopBy = StopBy.USER_MANUAL
    reason: str | None = None
    outputs: dict[str, Any] = Field(default_factory=dict)


# --- agent nodes ---------------------------------------------------------------------------------


class QueueAgentLogEvent(AppQueueEvent):
    """A step of an agent node started or finished (Dify's ``agent_log``): ``id`` is the step,
    ``node_execution_id`` the agent node's execution."""

    event: Literal[QueueEvent.AGENT_LOG] = QueueEvent.AGENT_LOG
    id: str
    node_execution_id: str
    node_id: str
    label: str
    parent_id: str | None = None
    error: str | None = None
    status: str
    data: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)


class QueueAgentThoughtEvent(AppQueueEvent):
    """A finished round of an agent (Dify's ``agent_thought`` fields)."""

    event: Literal[QueueEvent.AGENT_THOUGHT] = QueueEvent.AGENT_THOUGHT
    id: str
    position: int
    thought: str = ""
    observation: str = ""
    tool: str = ""
    tool_input: str = ""
    tool_labels: dict[str, Any] = Field(default_factory=dict)
    message_files: list[str] = Field(default_factory=list)
    node_id: str
    node_execution_id: str


QUEUE_EVENT_MODELS: tuple[type[AppQueueEvent], ...] = (
    LLMChunkEvent, TextChunkEvent, AgentMessageEvent, MessageReplaceEvent, MessageEndEvent,
    WorkflowStartedEvent, WorkflowSucceededEvent, WorkflowFailedEvent,
    WorkflowPartialSucceededEvent, NodeStartedEvent, NodeSucceededEvent, NodeFailedEvent,
    NodeExceptionEvent, NodeRetryEvent, RetrieverResourcesEvent, IterationStartEvent,
    IterationNextEvent, IterationCompletedEvent, LoopStartEvent, LoopNextEvent,
    LoopCompletedEvent, ParallelBranchStartedEvent,
    ParallelBranchFinishedEvent, ErrorEvent, PingEvent, StopEvent,
    QueueAgentLogEvent, QueueAgentThoughtEvent,
)  # fmt: skip
"""One model per :class:`QueueEvent`, told apart by their ``event`` field."""
# The union is built from the tuple (one list to keep); mypy cannot follow a dynamic union.
_UNION: Any = Annotated[Union[QUEUE_EVENT_MODELS], Field(discriminator="event")]  # noqa: UP007
_ADAPTER: TypeAdapter[AppQueueEvent] = TypeAdapter(_UNION)

TERMINAL_EVENTS = frozenset(
    {QueueEvent.WORKFLOW_SUCCEEDED, QueueEvent.WORKFLOW_FAILED, QueueEvent.MESSAGE_END,
     QueueEvent.WORKFLOW_PARTIAL_SUCCEEDED, QueueEvent.STOP, QueueEvent.ERROR}
)  # fmt: skip
"""Events that can end a run's stream (a chat run's workflow_succeeded is followed by
message_end, so the publisher, not the event type alone, marks the last one)."""


def parse_queue_event(data: str | bytes | dict[str, Any]) -> AppQueueEvent:
    """The typed event for a stream entry's JSON (or an already decoded dict)."""
    if isinstance(data, dict):
        return _ADAPTER.validate_python(data)
    return _ADAPTER.validate_json(data)


# --- the conversion ------------------------------------------------------------------------------

_RENAMED: dict[type[GraphEngineEvent], type[AppQueueEvent]] = {
    NodeRunStartedEvent: NodeStartedEvent,
    NodeRunSucceededEvent: NodeSucceededEvent,
    NodeRunFailedEvent: NodeFailedEvent,
    NodeRunExceptionEvent: NodeExceptionEvent,
    NodeRunRetryEvent: NodeRetryEvent,
    NodeRunRetrieverResourceEvent: RetrieverResourcesEvent,
    IterationRunStartedEvent: IterationStartEvent,
    IterationRunNextEvent: IterationNextEvent,
    IterationRunSucceededEvent: IterationCompletedEvent,
    IterationRunFailedEvent: IterationCompletedEvent,
    LoopRunStartedEvent: LoopStartEvent,
    LoopRunNextEvent: LoopNextEvent,
    LoopRunSucceededEvent: LoopCompletedEvent,
    LoopRunFailedEvent: LoopCompletedEvent,
    ParallelBranchRunStartedEvent: ParallelBranchStartedEvent,
    ParallelBranchRunSucceededEvent: ParallelBranchFinishedEvent,
    ParallelBranchRunFailedEvent: ParallelBranchFinishedEvent,
}


def to_queue_event(event: GraphEngineEvent) -> AppQueueEvent | None:
    """The queue event for an engine event; None for events clients do not see.

    GraphRunResumed and GraphRunPaused mark time-slice boundaries of one run: a client sees one
    workflow_started and one terminal event however many slices the run took.
    """
    if isinstance(event, GraphRunStartedEvent):
        return WorkflowStartedEvent()
    if isinstance(event, GraphRunSucceededEvent):
        return WorkflowSucceededEvent(outputs=event.outputs)
    if isinstance(event, GraphRunFailedEvent):
        return WorkflowFailedEvent(error=event.error, exceptions_count=event.exceptions_count)
    if isinstance(event, GraphRunPartialSucceededEvent):
        return WorkflowPartialSucceededEvent(
            exceptions_count=event.exceptions_count, outputs=event.outputs
        )
    if isinstance(event, GraphRunAbortedEvent):
        return StopEvent(stopped_by=StopBy.USER_MANUAL, reason=event.reason, outputs=event.outputs)
    if isinstance(event, NodeRunStreamChunkEvent):
        return TextChunkEvent(
            text=event.chunk,
            from_variable_selector=list(event.selector),
            node_id=event.node_id,
            in_iteration_id=event.in_iteration_id,
        )
    if isinstance(event, AgentLogEvent):
        return QueueAgentLogEvent(
            id=event.log_id, node_execution_id=event.id, node_id=event.node_id,
            label=event.label, parent_id=event.parent_id, error=event.error,
            status=event.status, data=event.data, metadata=event.log_metadata,
        )  # fmt: skip
    if isinstance(event, AgentThoughtEvent):
        return QueueAgentThoughtEvent(
            id=event.thought_id, position=event.position, thought=event.thought,
            observation=event.observation, tool=event.tool, tool_input=event.tool_input,
            tool_labels=event.tool_labels, node_id=event.node_id, node_execution_id=event.id,
        )  # fmt: skip
    target = _RENAMED.get(type(event))
    if target is None:
        return None
    return target.model_validate(event.model_dump())
