"""relay's run stream as Dify's streaming protocol: ``data: {json}`` lines, ``event: ping``.

Each queue event of the run becomes Dify's event with its top-level fields (``event``,
``task_id``, ``workflow_run_id``; in chat apps also ``message_id``, ``conversation_id`` and
``created_at``) and its ``data`` in Dify's shape. Answer text is ``text_chunk`` in a workflow app
and ``message`` in a chat app. A completion or basic chat app streams only its messages
(``message``, ``message_end``, ``error``, ``ping``), as Dify does for apps without a workflow:
its workflow and node events are left out, and a completion's events name no conversation.
Otherwise the run's terminal event becomes ``workflow_finished`` (read from
the run's record, which is final before its terminal event is written); a chat app then gets
``message_end``, or ``error`` when the run failed. Events Dify's protocol does not carry
(retriever resources go into ``message_end``'s metadata) are left out, and event names this
module does not know are skipped, so new kinds of queue events never break a Dify client.
Pure: no I/O here; the record is read through the ``finished`` callback.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from relay.streaming import StreamItem

PING_FRAME = b"event: ping\n\n"
COMPLETION = "completion"
BASIC_MODES = frozenset({"chat", COMPLETION})
CONTAINER_NODES = frozenset({"iteration", "loop"})

RunSnapshot = Mapping[str, Any]
"""The run's record as Dify's ``workflow_finished`` data (status, outputs, timings...)."""

_NODE_FINISHED = {
    "node_succeeded": "succeeded",
    "node_failed": "failed",
    "node_exception": "exception",
}
_RUN_FINISHED = {
    "workflow_succeeded": "succeeded",
    "workflow_failed": "failed",
    "workflow_partial_succeeded": "partial-succeeded",
    "stop": "stopped",
}


def timestamp(value: Any) -> int | None:
    """Unix seconds (Dify's ``created_at``) of an ISO 8601 string or a datetime."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return int(value.timestamp())
    if isinstance(value, int | float):
        return int(value)
    return int(datetime.fromisoformat(str(value)).timestamp())


def frame(payload: Mapping[str, Any]) -> bytes:
    """One Dify event on the wire."""
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


@dataclass
class DifyStream:
    """Turns one run's stream items into Dify's events (stateful: node indexes, answer)."""

    mode: str  # "workflow", "advanced-chat", "chat" or "completion"
    run_id: str
    app_id: str
    created_at: int
    inputs: Mapping[str, Any]
    finished: Callable[[], RunSnapshot]
    message_id: str | None = None
    conversation_id: str | None = None
    _index: int = 0
    _nodes: dict[str, tuple[int, str | None]] = field(default_factory=dict)
    _resources: list[Any] = field(default_factory=list)
    ended: bool = False

    @property
    def chat(self) -> bool:
        return self.mode != "workflow"

    @property
    def basic(self) -> bool:
        """A completion or basic chat app: Dify streams its messages only, no workflow events."""
        return self.mode in BASIC_MODES

    def frames(self, items: Iterator[StreamItem]) -> Iterator[bytes]:
        """The wire frames for ``items`` (pings included)."""
        for item in items:
            if item.event == "ping":
                yield PING_FRAME
                continue
            for event in self.events(item.event, json.loads(item.data)):
                yield frame(event)

    def events(self, name: str, payload: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Dify's events for one queue event (none, one or two)."""
        if self.basic and name in _WORKFLOW_ONLY:
            return []
        handler = _HANDLERS.get(name)
        return handler(self, payload) if handler is not None else []

    # --- framing ------------------------------------------------------------------------------

    def envelope(self, event: str, **fields: Any) -> dict[str, Any]:
        """The top-level fields every event of this stream carries, then ``fields``."""
        out: dict[str, Any] = {"event": event}
        if self.chat:
            out.update(
                conversation_id=self.conversation_id,
                message_id=self.message_id,
                created_at=self.created_at,
            )
        out.update(task_id=self.run_id, workflow_run_id=self.run_id)
        out.update(fields)
        return out

    def _message_fields(self) -> dict[str, Any]:
        fields = {
            "task_id": self.run_id,
            "id": self.message_id,
            "message_id": self.message_id,
            "conversation_id": self.conversation_id,
            "created_at": self.created_at,
        }
        if self.mode == COMPLETION:
            del fields["conversation_id"]  # a completion belongs to no conversation for clients
        return fields

    # --- handlers -----------------------------------------------------------------------------

    def _workflow_started(self, _: Mapping[str, Any]) -> list[dict[str, Any]]:
        data = {
            "id": self.run_id,
            "workflow_id": self.app_id,
            "sequence_number": 1,
            "inputs": dict(self.inputs),
            "created_at": self.created_at,
        }
        return [self.envelope("workflow_started", data=data)]

    def _node_common(self, p: Mapping[str, Any]) -> dict[str, Any]:
        index, predecessor = self._nodes.get(str(p.get("id")), (self._index, None))
        return {
            "id": p.get("id"),
            "node_id": p.get("node_id"),
            "node_type": p.get("node_type"),
            "title": p.get("node_title", ""),
            "index": index,
            "predecessor_node_id": p.get("predecessor_node_id", predecessor),
            "created_at": timestamp(p.get("start_at")),
            "extras": {},
            "parallel_id": p.get("parallel_id"),
            "parallel_start_node_id": p.get("parallel_start_node_id"),
            "parent_parallel_id": p.get("parent_parallel_id"),
            "parent_parallel_start_node_id": p.get("parent_parallel_start_node_id"),
            "iteration_id": p.get("in_iteration_id"),
        }

    def _node_started(self, p: Mapping[str, Any]) -> list[dict[str, Any]]:
        if p.get("node_type") in CONTAINER_NODES:
            return []  # Dify streams an iteration or loop as its own events only
        self._index += 1
        self._nodes[str(p.get("id"))] = (self._index, p.get("predecessor_node_id"))
        data = self._node_common(p) | {"inputs": None}
        return [self.envelope("node_started", data=data)]

    def _node_finished(self, p: Mapping[str, Any], status: str) -> list[dict[str, Any]]:
        if p.get("node_type") in CONTAINER_NODES:
            return []
        data = self._node_common(p) | {
            "inputs": p.get("inputs"),
            "process_data": p.get("process_data"),
            "outputs": p.get("outputs"),
            "status": status,
            "error": p.get("error"),
            "elapsed_time": p.get("elapsed_time", 0.0),
            "execution_metadata": p.get("metadata") or None,
            "finished_at": timestamp(p.get("finished_at")),
            "files": [],
        }
        return [self.envelope("node_finished", data=data)]

    def _node_retry(self, p: Mapping[str, Any]) -> list[dict[str, Any]]:
        data = self._node_common(p) | {
            "status": "retry",
            "error": p.get("error"),
            "retry_index": p.get("retry_index"),
        }
        return [self.envelope("node_retry", data=data)]

    def _resources_seen(self, p: Mapping[str, Any]) -> list[dict[str, Any]]:
        self._resources.extend(p.get("resources") or [])
        return []

    def _container(self, p: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "id": p.get("id"),
            "node_id": p.get("node_id"),
            "node_type": p.get("node_type"),
            "title": p.get("node_title", ""),
            "created_at": timestamp(p.get("start_at")),
            "extras": {},
            "parallel_id": p.get("parallel_id"),
            "parallel_start_node_id": p.get("parallel_start_node_id"),
        }

    def _started(self, p: Mapping[str, Any], event: str) -> list[dict[str, Any]]:
        data = self._container(p) | {"metadata": p.get("metadata") or {}, "inputs": p.get("inputs")}
        return [self.envelope(event, data=data)]

    def _next(self, p: Mapping[str, Any], event: str, previous: str) -> list[dict[str, Any]]:
        data = self._container(p) | {"index": p.get("index"), previous: p.get(previous)}
        return [self.envelope(event, data=data)]

    def _completed(self, p: Mapping[str, Any], event: str) -> list[dict[str, Any]]:
        error = p.get("error")
        metadata = p.get("metadata") or {}
        data = self._container(p) | {
            "inputs": p.get("inputs"),
            "outputs": p.get("outputs"),
            "status": "failed" if error else "succeeded",
            "error": error,
            "steps": p.get("steps"),
            "execution_metadata": metadata or None,
            "total_tokens": int(metadata.get("total_tokens", 0) or 0),
            "elapsed_time": metadata.get("elapsed_time"),
        }
        return [self.envelope(event, data=data)]

    def _branch(self, p: Mapping[str, Any], event: str) -> list[dict[str, Any]]:
        data: dict[str, Any] = {
            "parallel_id": p.get("parallel_id"),
            "parallel_branch_id": p.get("parallel_start_node_id"),
            "parent_parallel_id": p.get("parent_parallel_id"),
            "parent_parallel_start_node_id": p.get("parent_parallel_start_node_id"),
            "iteration_id": p.get("in_iteration_id"),
            "created_at": self.created_at,
        }
        if event == "parallel_branch_finished":
            data["status"] = "failed" if p.get("error") else "succeeded"
            data["error"] = p.get("error")
        return [self.envelope(event, data=data)]

    def _text(self, p: Mapping[str, Any]) -> list[dict[str, Any]]:
        text = str(p.get("text", ""))
        if self.chat:
            return [{"event": "message", **self._message_fields(), "answer": text}]
        data = {"text": text, "from_variable_selector": p.get("from_variable_selector")}
        return [self.envelope("text_chunk", data=data)]

    def _agent_message(self, p: Mapping[str, Any]) -> list[dict[str, Any]]:
        return [{"event": "agent_message", **self._message_fields(), "answer": p.get("text", "")}]

    def _agent_thought(self, p: Mapping[str, Any]) -> list[dict[str, Any]]:
        fields = self._message_fields()
        thought = {
            "id": p.get("id") or fields["id"],
            "task_id": self.run_id,
            "message_id": self.message_id,
            "conversation_id": self.conversation_id,
            "position": p.get("position", 1),
            "thought": p.get("thought", ""),
            "observation": p.get("observation", ""),
            "tool": p.get("tool", ""),
            "tool_labels": p.get("tool_labels", {}),
            "tool_input": p.get("tool_input", ""),
            "message_files": p.get("message_files", []),
            "created_at": self.created_at,
        }
        return [{"event": "agent_thought", **thought}]

    def _agent_log(self, p: Mapping[str, Any]) -> list[dict[str, Any]]:
        data = {key: value for key, value in p.items() if key != "event"}
        return [self.envelope("agent_log", data=data)]

    def _message_file(self, p: Mapping[str, Any]) -> list[dict[str, Any]]:
        return [
            {
                "event": "message_file",
                "id": p.get("id"),
                "type": p.get("type", "image"),
                "belongs_to": p.get("belongs_to", "assistant"),
                "url": p.get("url"),
                "conversation_id": self.conversation_id,
            }
        ]

    def _message_replace(self, p: Mapping[str, Any]) -> list[dict[str, Any]]:
        return [{"event": "message_replace", **self._message_fields(), "answer": p.get("text", "")}]

    def _message_end(self, p: Mapping[str, Any]) -> list[dict[str, Any]]:
        self.ended = True
        usage = dict(p.get("usage") or {})
        fields = self._message_fields()
        fields["id"] = fields["message_id"] = p.get("message_id") or self.message_id
        metadata = {"usage": dify_usage(usage), "retriever_resources": self._resources}
        return [{"event": "message_end", **fields, "metadata": metadata, "files": []}]

    def _run_finished(self, p: Mapping[str, Any], status: str) -> list[dict[str, Any]]:
        if self.basic:
            return self._basic_finished(p, status)
        snapshot = dict(self.finished())
        if snapshot.get("status") in (None, "running"):
            snapshot["status"] = status
        if snapshot.get("outputs") is None and "outputs" in p:
            snapshot["outputs"] = p.get("outputs")
        if status in ("failed", "stopped") and not snapshot.get("error"):
            snapshot["error"] = p.get("error") or p.get("reason")
        data = {
            "id": self.run_id,
            "workflow_id": self.app_id,
            "sequence_number": 1,
            "status": snapshot.get("status"),
            "outputs": snapshot.get("outputs"),
            "error": snapshot.get("error"),
            "elapsed_time": snapshot.get("elapsed_time", 0.0),
            "total_tokens": snapshot.get("total_tokens", 0),
            "total_steps": snapshot.get("total_steps", 0),
            "exceptions_count": snapshot.get("exceptions_count", 0),
            "created_at": self.created_at,
            "finished_at": timestamp(snapshot.get("finished_at")),
            "files": [],
        }
        events = [self.envelope("workflow_finished", data=data)]
        if self.chat and status == "failed":
            events.append(self._error_event("completion_request_error", str(data["error"]), 400))
        if not self.chat or status != "succeeded":
            self.ended = True
        return events

    def _basic_finished(self, p: Mapping[str, Any], status: str) -> list[dict[str, Any]]:
        """A completion or chat app's run ended: its answer's ``message_end`` follows a success;
        a stop ends the message (as Dify does); a failure is an ``error``."""
        if status in ("succeeded", "partial-succeeded"):
            return []
        if status == "stopped":
            return self._message_end({})
        error = p.get("error") or self.finished().get("error") or "the run failed"
        return [self._error_event("completion_request_error", str(error), 400)]

    def _error(self, p: Mapping[str, Any]) -> list[dict[str, Any]]:
        code = str(p.get("code", "internal_server_error"))
        status = 429 if code == "quota_exceeded" else 500 if code == "worker_lost" else 400
        return [self._error_event(code, str(p.get("message", "")), status)]

    def _error_event(self, code: str, message: str, status: int) -> dict[str, Any]:
        self.ended = True
        out: dict[str, Any] = {"event": "error", "task_id": self.run_id}
        if self.mode == COMPLETION:
            out.update(message_id=self.message_id, created_at=self.created_at)
        elif self.chat:
            out.update(message_id=self.message_id, conversation_id=self.conversation_id)
        else:
            out["workflow_run_id"] = self.run_id
        out.update(status=status, code=code, message=message)
        return out


def dify_usage(usage: Mapping[str, Any]) -> dict[str, Any]:
    """relay's token counts in Dify's usage object (relay does not price tokens)."""
    prompt = int(usage.get("prompt_tokens", 0) or 0)
    completion = int(usage.get("completion_tokens", 0) or 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": int(usage.get("total_tokens", prompt + completion) or 0),
        "prompt_price": "0",
        "completion_price": "0",
        "total_price": "0",
        "currency": "USD",
        "latency": 0.0,
    }


_Handler = Callable[[DifyStream, Mapping[str, Any]], list[dict[str, Any]]]


def _node_finished_as(status: str) -> _Handler:
    def handle(stream: DifyStream, payload: Mapping[str, Any]) -> list[dict[str, Any]]:
        return stream._node_finished(payload, status)

    return handle


def _run_finished_as(status: str) -> _Handler:
    def handle(stream: DifyStream, payload: Mapping[str, Any]) -> list[dict[str, Any]]:
        return stream._run_finished(payload, status)

    return handle


# What Dify streams for workflow and advanced-chat apps only (not for completion or basic chat).
_WORKFLOW_ONLY = frozenset(
    {
        "workflow_started",
        "node_started",
        *_NODE_FINISHED,
        "node_retry",
        "iteration_start",
        "iteration_next",
        "iteration_completed",
        "loop_start",
        "loop_next",
        "loop_completed",
        "parallel_branch_started",
        "parallel_branch_finished",
        "agent_log",
    }
)

_HANDLERS: dict[str, _Handler] = {
    "workflow_started": DifyStream._workflow_started,
    "node_started": DifyStream._node_started,
    **{name: _node_finished_as(status) for name, status in _NODE_FINISHED.items()},
    "node_retry": DifyStream._node_retry,
    "retriever_resources": DifyStream._resources_seen,
    "iteration_start": lambda s, p: s._started(p, "iteration_started"),
    "iteration_next": lambda s, p: s._next(p, "iteration_next", "pre_iteration_output"),
    "iteration_completed": lambda s, p: s._completed(p, "iteration_completed"),
    "loop_start": lambda s, p: s._started(p, "loop_started"),
    "loop_next": lambda s, p: s._next(p, "loop_next", "pre_loop_output"),
    "loop_completed": lambda s, p: s._completed(p, "loop_completed"),
    "parallel_branch_started": lambda s, p: s._branch(p, "parallel_branch_started"),
    "parallel_branch_finished": lambda s, p: s._branch(p, "parallel_branch_finished"),
    "text_chunk": DifyStream._text,
    "llm_chunk": DifyStream._text,
    "agent_message": DifyStream._agent_message,
    "agent_thought": DifyStream._agent_thought,
    "agent_log": DifyStream._agent_log,
    "message_file": DifyStream._message_file,
    "message_replace": DifyStream._message_replace,
    "message_end": DifyStream._message_end,
    **{name: _run_finished_as(status) for name, status in _RUN_FINISHED.items()},
    "error": DifyStream._error,
}
