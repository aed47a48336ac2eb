"""One node execution: the node's own events, retries, then its end event.

Runs on a worker thread. Everything it produces goes through ``emit`` to the dispatcher, in
order; the returned :class:`NodeOutcome` tells the dispatcher which edges to take.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from relay.workflow.errors import NodeError, NodeStopped
from relay.workflow.events import (
    GraphEngineEvent,
    NodeRunExceptionEvent,
    NodeRunFailedEvent,
    NodeRunRetrieverResourceEvent,
    NodeRunRetryEvent,
    NodeRunSucceededEvent,
    utcnow,
)
from relay.workflow.nodes.base import (
    Node,
    NodeContext,
    NodeRunResult,
    RetrieverResources,
    StreamChunk,
)
from relay.workflow.runtime_state import NodeState

logger = logging.getLogger("relay.workflow")


@dataclass(frozen=True)
class ChunkItem:
    """A node's raw stream chunk on its way to the response coordinator."""

    node_id: str
    chunk: StreamChunk


@dataclass
class NodeOutcome:
    """How a node execution ended and what follows from it."""

    node_id: str
    status: NodeState
    outputs: dict[str, Any] = field(default_factory=dict)
    handle: str | None = None
    error: str | None = None
    event: GraphEngineEvent | None = None


def describe_error(exc: BaseException) -> str:
    """The message a failed node reports: ours as written, anything else with its type."""
    if isinstance(exc, NodeError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


def run_node(node: Node, ctx: NodeContext, emit: Callable[[object], None]) -> NodeOutcome:
    """Run ``node`` with its retry policy and error strategy (NodeRunStarted is already out)."""
    fields = dict(ctx.event_fields)
    started = time.monotonic()
    attempt = 0
    while True:
        try:
            result = _drive(node, ctx, fields, emit)
        except NodeStopped:
            return NodeOutcome(node.id, NodeState.STOPPED)
        except Exception as exc:
            if ctx.stop.is_set():
                # The node broke because it was stopped (killed child, closed stream).
                return NodeOutcome(node.id, NodeState.STOPPED)
            if not isinstance(exc, NodeError):
                logger.warning("node %s raised", node.id, exc_info=True)
            error = describe_error(exc)
            if attempt < node.policy.max_retries:
                attempt += 1
                emit(NodeRunRetryEvent(**fields, retry_index=attempt, error=error))
                if ctx.stop.wait(node.policy.retry_interval):
                    return NodeOutcome(node.id, NodeState.STOPPED)
                continue
            return _failure(node, fields, started, error, type(exc).__name__)
        break
    elapsed = time.monotonic() - started
    event = NodeRunSucceededEvent(
        **fields,
        inputs=result.inputs,
        process_data=result.process_data,
        outputs=result.outputs,
        metadata=result.metadata,
        finished_at=utcnow(),
        elapsed_time=elapsed,
    )
    return NodeOutcome(
        node.id,
        NodeState.SUCCEEDED,
        outputs=result.outputs,
        handle=result.edge_source_handle,
        event=event,
    )


def _failure(
    node: Node, fields: Mapping[str, Any], started: float, error: str, error_type: str
) -> NodeOutcome:
    elapsed = time.monotonic() - started
    if node.policy.error_strategy is None:
        failed = NodeRunFailedEvent(
            **fields, error=error, finished_at=utcnow(), elapsed_time=elapsed
        )
        return NodeOutcome(node.id, NodeState.FAILED, error=error, event=failed)
    outputs, handle = node.policy.handled_outputs(error, error_type)
    handled = NodeRunExceptionEvent(
        **fields,
        error=error,
        strategy=node.policy.error_strategy,
        outputs=outputs,
        finished_at=utcnow(),
        elapsed_time=elapsed,
    )
    return NodeOutcome(
        node.id, NodeState.EXCEPTION, outputs=outputs, handle=handle, error=error, event=handled
    )


def _drive(
    node: Node, ctx: NodeContext, fields: Mapping[str, Any], emit: Callable[[object], None]
) -> NodeRunResult:
    ctx.stop.raise_if_set()
    run = node.run(ctx)
    while True:
        try:
            item = next(run)
        except StopIteration as done:
            result: NodeRunResult = done.value
            return result
        if isinstance(item, StreamChunk):
            emit(ChunkItem(node.id, item))
        elif isinstance(item, RetrieverResources):
            emit(
                NodeRunRetrieverResourceEvent(
                    **fields, resources=item.resources, context=item.context
                )
            )
        else:
            emit(item)
