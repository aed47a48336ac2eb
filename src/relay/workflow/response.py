"""Streaming of answer and end nodes: their text goes out as upstream values arrive.

A response node (answer, end) is a sequence of segments: literal text and variable references.
It becomes *live* once every branch decision above it has been made (all if-else and
fail-branch ancestors finished) and it was not skipped. Live nodes stream one at a time, in the
order they became live, so two answers never interleave. A variable segment forwards the
source's stream chunks as they come (an llm's ``text``) or, for a value that does not stream,
the whole value once its node finished (end nodes leave unstreamed values to the outputs).

Nodes' own stream chunks never reach the caller directly: what the caller sees is attributed to
the answer/end node that shows it, as in Dify. Pure state machine, driven by the dispatcher.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from relay.workflow.events import NodeRunStreamChunkEvent
from relay.workflow.graph import Graph
from relay.workflow.nodes.base import Node, ResponseSpec, StreamChunk
from relay.workflow.runtime_state import TERMINAL, NodeState, RunState
from relay.workflow.variables import (
    CONVERSATION_NODE_ID,
    SPECIAL_NODE_IDS,
    Selector,
    VariablePool,
    to_text,
)

_NOT_STARTED = (NodeState.PENDING, NodeState.READY)


def _special(selector: Selector, graph: Graph) -> bool:
    """A variable no node of this graph writes (sys, env, conversation, an outer scope)."""
    return selector[0] in SPECIAL_NODE_IDS or selector[0] not in graph.nodes


@dataclass
class _Session:
    node_id: str
    cursor: int = 0
    consumed: int = 0


class ResponseCoordinator:
    """Turns upstream progress into NodeRunStreamChunk events of answer/end nodes."""

    def __init__(
        self,
        graph: Graph,
        nodes: Mapping[str, Node],
        state: RunState,
        pool: VariablePool,
        fields: Callable[[str], dict[str, Any]],
    ) -> None:
        self._graph = graph
        self._state = state
        self._pool = pool
        self._fields = fields
        self.specs: dict[str, ResponseSpec] = {}
        for node_id in graph.topological_order:
            spec = nodes[node_id].response_spec()
            if spec is not None:
                self.specs[node_id] = spec
        self._deciders = {
            node_id: [a for a in graph.ancestors(node_id) if nodes[a].decides_branch]
            for node_id in self.specs
        }
        self._wanted = {
            seg.selector
            for spec in self.specs.values()
            for seg in spec.segments
            if seg.selector is not None and len(seg.selector) == 2
        }
        self._waiting: list[str] = list(self.specs)
        self._sessions: deque[_Session] = deque()
        self._buffers: dict[Selector, list[str]] = {}
        self._closed: set[Selector] = set()
        self._answer: list[str] = []

    @property
    def has_answer(self) -> bool:
        """Whether the graph has answer nodes (then run outputs carry ``answer``)."""
        return any(spec.kind == "answer" for spec in self.specs.values())

    @property
    def answer_text(self) -> str:
        """Everything answer nodes streamed so far, in order."""
        return "".join(self._answer)

    def on_chunk(self, chunk: StreamChunk) -> list[NodeRunStreamChunkEvent]:
        """A node streamed a piece of one of its outputs."""
        if chunk.selector not in self._wanted:
            return []
        buffer = self._buffers.setdefault(chunk.selector, [])
        if chunk.chunk:
            buffer.append(chunk.chunk)
        if chunk.is_final:
            self._closed.add(chunk.selector)
        return self._pump()

    def on_progress(self) -> list[NodeRunStreamChunkEvent]:
        """Node states changed: make nodes live and stream what became available."""
        if self._waiting:
            still: list[str] = []
            for node_id in self._waiting:
                if self._state.node_states[node_id] is NodeState.SKIPPED:
                    continue
                if all(self._state.node_states[d] in TERMINAL for d in self._deciders[node_id]):
                    self._sessions.append(_Session(node_id))
                else:
                    still.append(node_id)
            self._waiting = still
        return self._pump()

    def _pump(self) -> list[NodeRunStreamChunkEvent]:
        out: list[NodeRunStreamChunkEvent] = []
        while self._sessions:
            session = self._sessions[0]
            if not self._advance(session, out):
                break
            self._sessions.popleft()
        return out

    def _advance(self, session: _Session, out: list[NodeRunStreamChunkEvent]) -> bool:
        """Stream as far as possible; True when the session is complete."""
        spec = self.specs[session.node_id]
        states = self._state.node_states
        while session.cursor < len(spec.segments):
            segment = spec.segments[session.cursor]
            waits = segment.selector is None or _special(segment.selector, self._graph)
            if waits and states[self._anchor(session)] in _NOT_STARTED:
                return False
            if segment.selector is None:
                self._emit(session, (session.node_id, "answer"), segment.text or "", True, out)
                self._next(session)
                continue
            selector = segment.selector
            owner = selector[0]
            if _special(selector, self._graph):
                # Conversation variables may be rewritten by an assigner upstream: wait until
                # the response node itself is about to run.
                if owner == CONVERSATION_NODE_ID and states[session.node_id] is NodeState.PENDING:
                    return False
                self._emit_value(session, selector, out)
                continue
            buffer = self._buffers.get(selector)
            if buffer is not None:
                for piece in buffer[session.consumed :]:
                    self._emit(session, selector, piece, False, out)
                session.consumed = len(buffer)
                if selector in self._closed:
                    self._emit(session, selector, "", True, out)
                    self._next(session)
                    continue
                if states[owner] in TERMINAL:
                    self._next(session)
                    continue
                return False
            if states[owner] in TERMINAL:
                self._emit_value(session, selector, out)
                continue
            return False
        return True

    def _anchor(self, session: _Session) -> str:
        """The node that must have started before the segment at the cursor goes out: the
        owner of the next segment streamed from a node of the graph, else the response node."""
        for segment in self.specs[session.node_id].segments[session.cursor :]:
            if segment.selector is not None and not _special(segment.selector, self._graph):
                return segment.selector[0]
        return session.node_id

    def _emit_value(
        self, session: _Session, selector: Selector, out: list[NodeRunStreamChunkEvent]
    ) -> None:
        if self.specs[session.node_id].kind == "answer":
            value = self._pool.get(selector)
            if value is not None:
                self._emit(session, selector, to_text(value), True, out)
        self._next(session)

    @staticmethod
    def _next(session: _Session) -> None:
        session.cursor += 1
        session.consumed = 0

    def _emit(
        self,
        session: _Session,
        selector: Selector,
        text: str,
        is_final: bool,
        out: list[NodeRunStreamChunkEvent],
    ) -> None:
        if not text and not is_final:
            return
        if not text and selector[0] == session.node_id:
            return
        if self.specs[session.node_id].kind == "answer":
            self._answer.append(text)
        out.append(
            NodeRunStreamChunkEvent(
                **self._fields(session.node_id),
                selector=list(selector),
                chunk=text,
                is_final=is_final,
            )
        )

    # --- checkpoints -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready streaming state."""
        return {
            "waiting": list(self._waiting),
            "sessions": [[s.node_id, s.cursor, s.consumed] for s in self._sessions],
            "buffers": [[list(sel), chunks] for sel, chunks in self._buffers.items()],
            "closed": [list(sel) for sel in self._closed],
            "answer": list(self._answer),
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        """Continue from :meth:`to_dict` output."""
        self._waiting = list(data["waiting"])
        self._sessions = deque(_Session(n, int(c), int(k)) for n, c, k in data["sessions"])
        self._buffers = {tuple(sel): list(chunks) for sel, chunks in data["buffers"]}
        self._closed = {tuple(sel) for sel in data["closed"]}
        self._answer = list(data["answer"])
