"""The dispatcher: runs one graph level (the workflow, or one iteration item) on a thread pool.

The dispatcher thread owns all state. It submits ready nodes to a bounded pool; workers run
them (:func:`run_node`) and put what happens on one queue; the dispatcher reads the queue in
order, takes and skips edges, starts newly ready nodes, and yields events. Stream chunks go
through the response coordinator (top level only). A stop (abort, limit, failure) stops
dispatching and tells running nodes through their stop token; a pause stops dispatching and
lets running nodes finish, so the state left is a clean node boundary. Pure scheduling logic:
the I/O happens inside nodes.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from relay.workflow.config import EngineConfig
from relay.workflow.events import (
    GraphEngineEvent,
    NodeRunFailedEvent,
    NodeRunStartedEvent,
    NodeRunStreamChunkEvent,
    ParallelBranchRunFailedEvent,
    ParallelBranchRunStartedEvent,
    ParallelBranchRunSucceededEvent,
    utcnow,
)
from relay.workflow.graph import Graph
from relay.workflow.node_runner import ChunkItem, NodeOutcome, run_node
from relay.workflow.nodes.base import Node, NodeContext, NodeServices, RunInfo
from relay.workflow.parallels import BranchIndex, BranchKey
from relay.workflow.response import ResponseCoordinator
from relay.workflow.runtime_state import TERMINAL, NodeState, RunState
from relay.workflow.stop import StopToken
from relay.workflow.variables import VariablePool

logger = logging.getLogger("relay.workflow")

_WAKE = object()


@dataclass(frozen=True)
class Scope:
    """Where a level runs: the top level, or item ``iteration_index`` of an iteration."""

    in_iteration_id: str | None = None
    iteration_index: int | None = None


class LevelPlan:
    """What is fixed about one graph level: its branches and each node's event fields."""

    def __init__(self, graph: Graph, nodes: Mapping[str, Node]) -> None:
        self.graph = graph
        self.branches = BranchIndex(graph)
        self.fields: dict[str, dict[str, Any]] = {}
        for node_id, config in graph.nodes.items():
            branch = self.branches.innermost(node_id)
            parent = self.branches.branches[branch.parent] if branch and branch.parent else None
            self.fields[node_id] = {
                "node_id": node_id,
                "node_type": config.type,
                "node_title": config.title,
                "parallel_id": branch.parallel_id if branch else None,
                "parallel_start_node_id": branch.start_node_id if branch else None,
                "parent_parallel_id": parent.parallel_id if parent else None,
                "parent_parallel_start_node_id": parent.start_node_id if parent else None,
            }
        self.end_nodes = {
            node_id
            for node_id in graph.nodes
            if (spec := nodes[node_id].response_spec()) is not None and spec.kind == "end"
        }


@dataclass(frozen=True)
class Blueprint:
    """Everything shared by all levels of one run."""

    nodes: Mapping[str, Node]
    plans: Mapping[str | None, LevelPlan]
    services: NodeServices
    run_info: RunInfo
    config: EngineConfig


class _Subgraphs:
    """The :class:`SubgraphRunner` iteration nodes get: runs their body for one item."""

    def __init__(self, blueprint: Blueprint) -> None:
        self._blueprint = blueprint

    @property
    def max_parallelism(self) -> int:
        return self._blueprint.config.max_iteration_parallelism

    def execution(
        self, iteration_node_id: str, pool: VariablePool, index: int, stop: StopToken
    ) -> GraphExecution:
        plan = self._blueprint.plans[iteration_node_id]
        execution = GraphExecution(
            self._blueprint, plan, pool, stop, scope=Scope(iteration_node_id, index)
        )
        execution.state.start()
        return execution


@dataclass(frozen=True)
class _Done:
    outcome: NodeOutcome


class GraphExecution:
    """Runs one level to its end; inspect ``error``/``stopped``/``paused`` afterwards."""

    def __init__(
        self,
        blueprint: Blueprint,
        plan: LevelPlan,
        pool: VariablePool,
        stop: StopToken,
        *,
        scope: Scope = Scope(),
        state: RunState | None = None,
        response: ResponseCoordinator | None = None,
        on_idle: Callable[[], None] | None = None,
    ) -> None:
        self._blueprint = blueprint
        self._plan = plan
        self.pool = pool
        self.stop = stop
        # Nodes get a child token: a failure here stops this level's nodes, not the whole run.
        self._node_stop = stop.child()
        self.scope = scope
        self.state = state or RunState(plan.graph)
        self.response = response
        self._on_idle = on_idle
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._running = 0
        self._pause_requested = False
        self._subgraphs = _Subgraphs(blueprint)
        self.error: str | None = None
        self.stopped = False
        self.paused = False
        index = plan.branches
        self._branch_remaining: dict[BranchKey, int] = {}
        self._branch_open: set[BranchKey] = set()
        for key, branch in index.branches.items():
            remaining = sum(1 for m in branch.members if self.state.node_states[m] not in TERMINAL)
            failed = any(self.state.node_states[m] is NodeState.FAILED for m in branch.members)
            self._branch_remaining[key] = remaining
            started = self.state.node_states[key[1]] not in (NodeState.PENDING, NodeState.READY)
            if started and remaining and not failed:
                self._branch_open.add(key)

    # --- control ------------------------------------------------------------------------------

    def request_pause(self) -> None:
        """Stop starting nodes; end once running ones finished (if work remains: paused)."""
        self._pause_requested = True
        self._queue.put(_WAKE)

    @property
    def halted(self) -> bool:
        """Whether no further node will be started (stop requested or a node failed)."""
        return self.stop.is_set() or self.error is not None

    # --- the loop -----------------------------------------------------------------------------

    def events(self) -> Iterator[GraphEngineEvent]:
        """Run the level; yield its events as they happen."""
        unsubscribe = self.stop.on_set(lambda: self._queue.put(_WAKE))
        workers = self._blueprint.config.max_workers
        executor = ThreadPoolExecutor(workers, thread_name_prefix="relay-workflow")
        try:
            if self.response is not None:
                yield from self.response.on_progress()
            while True:
                # Re-checked per node: a layer may stop or pause the run while one is dispatched.
                while (
                    self.state.ready
                    and self._running < workers
                    and not self.halted
                    and not self._pause_requested
                ):
                    yield from self._dispatch(executor, self.state.ready.popleft())
                if self._running == 0:
                    break
                try:
                    item = self._queue.get(timeout=self._blueprint.config.idle_tick)
                except queue.Empty:
                    if self._on_idle is not None:
                        self._on_idle()
                    continue
                if item is not _WAKE:
                    yield from self._handle(item)
        finally:
            unsubscribe()
            if self._running:
                # The consumer went away mid-run: stop the nodes before waiting for them.
                self._node_stop.set("run closed")
            executor.shutdown(wait=True, cancel_futures=True)
        self.stopped = self.stop.is_set()
        self.paused = self._pause_requested and not self.halted and bool(self.state.ready)

    def _dispatch(self, executor: ThreadPoolExecutor, node_id: str) -> Iterator[GraphEngineEvent]:
        self.state.node_states[node_id] = NodeState.RUNNING
        for key in self._plan.branches.starts.get(node_id, ()):
            self._branch_open.add(key)
            yield ParallelBranchRunStartedEvent(**self._branch_fields(key))
        fields = self.fields(node_id)
        # Started goes out before the node is submitted, so that a layer reacting to it (a step
        # limit) stops the node before it runs rather than racing it.
        yield NodeRunStartedEvent(**fields, predecessor_node_id=self.state.predecessor(node_id))
        if self.halted:
            self.state.node_states[node_id] = NodeState.STOPPED
            return
        self._running += 1
        executor.submit(self._work, node_id, fields)
        if self.response is not None:
            # Text of a response node that waited for this node to start may go out now.
            yield from self.response.on_progress()

    def _work(self, node_id: str, fields: dict[str, Any]) -> None:
        node = self._blueprint.nodes[node_id]
        ctx = NodeContext(
            execution_id=fields["id"],
            pool=self.pool,
            services=self._blueprint.services,
            run=self._blueprint.run_info,
            stop=self._node_stop,
            event_fields=fields,
            subgraphs=self._subgraphs,
        )
        try:
            outcome = run_node(node, ctx, self._queue.put)
        except BaseException as exc:  # a bug in the runner must not hang the dispatcher
            logger.exception("node %s crashed the runner", node_id)
            error = f"{type(exc).__name__}: {exc}"
            event = NodeRunFailedEvent(
                **fields, error=error, finished_at=utcnow(), elapsed_time=0.0
            )
            outcome = NodeOutcome(node_id, NodeState.FAILED, error=error, event=event)
        self._queue.put(_Done(outcome))

    def fields(self, node_id: str) -> dict[str, Any]:
        """Event fields of ``node_id`` in this level and scope."""
        return {
            **self._plan.fields[node_id],
            "id": self.state.execution_id(node_id),
            "start_at": utcnow(),
            "in_iteration_id": self.scope.in_iteration_id,
            "iteration_index": self.scope.iteration_index,
        }

    def _handle(self, item: object) -> Iterator[GraphEngineEvent]:
        if isinstance(item, _Done):
            yield from self._finish(item.outcome)
        elif isinstance(item, ChunkItem):
            if self.response is not None and not self.halted:
                yield from self.response.on_chunk(item.chunk)
        elif isinstance(item, GraphEngineEvent) and not (
            self.halted and isinstance(item, NodeRunStreamChunkEvent)
        ):
            yield item

    def _finish(self, outcome: NodeOutcome) -> Iterator[GraphEngineEvent]:
        self._running -= 1
        node_id = outcome.node_id
        if outcome.event is not None:
            yield outcome.event
        if outcome.status is NodeState.STOPPED:
            self.state.node_states[node_id] = NodeState.STOPPED
            return
        if outcome.status is NodeState.FAILED:
            self.state.node_states[node_id] = NodeState.FAILED
            if self.error is None:
                self.error = outcome.error or "node failed"
                self._node_stop.set("a node failed")
            yield from self._branches_after([node_id], failed=node_id)
            return
        self.pool.add_outputs(node_id, outcome.outputs)
        if outcome.status is NodeState.EXCEPTION:
            self.state.exceptions_count += 1
        if node_id in self._plan.end_nodes and self.scope.in_iteration_id is None:
            self.state.end_outputs.update(outcome.outputs)
        _, skipped = self.state.finish(node_id, outcome.status, outcome.handle)
        if self.response is not None and not self.halted:
            yield from self.response.on_progress()
        yield from self._branches_after([node_id, *skipped], failed=None)

    # --- parallel branches ----------------------------------------------------------------------

    def _branch_fields(self, key: BranchKey) -> dict[str, Any]:
        branch = self._plan.branches.branches[key]
        parent = branch.parent
        return {
            "parallel_id": key[0],
            "parallel_start_node_id": key[1],
            "parent_parallel_id": parent[0] if parent else None,
            "parent_parallel_start_node_id": parent[1] if parent else None,
            "in_iteration_id": self.scope.in_iteration_id,
            "iteration_index": self.scope.iteration_index,
        }

    def _branches_after(
        self, finished: list[str], *, failed: str | None
    ) -> Iterator[GraphEngineEvent]:
        node_branches = self._plan.branches.node_branches
        for node_id in finished:
            for key in node_branches.get(node_id, ()):
                self._branch_remaining[key] -= 1
                if key not in self._branch_open:
                    continue
                if failed is not None:
                    self._branch_open.discard(key)
                    yield ParallelBranchRunFailedEvent(
                        **self._branch_fields(key), error=self.error or "node failed"
                    )
                elif self._branch_remaining[key] == 0:
                    self._branch_open.discard(key)
                    yield ParallelBranchRunSucceededEvent(**self._branch_fields(key))
