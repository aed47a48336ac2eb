"""The variable pool: every value a run produces, addressed by ``[node_id, name, ...]`` selectors.

Node outputs live under their node id; system variables under ``sys`` (``sys.query``,
``sys.user_id``, ...), environment variables under ``env`` and conversation variables under
``conversation``, as in Dify. Text fields reference values with ``{{#node_id.name#}}``.
Values are plain JSON data (files are dicts), so a pool serialises into a checkpoint as is.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

SYSTEM_NODE_ID = "sys"
ENVIRONMENT_NODE_ID = "env"
CONVERSATION_NODE_ID = "conversation"
SPECIAL_NODE_IDS = frozenset({SYSTEM_NODE_ID, ENVIRONMENT_NODE_ID, CONVERSATION_NODE_ID})

Selector = tuple[str, ...]

# Dify's reference syntax: {{#node_id.name#}} with optional nested keys ({{#start.file.size#}}).
TEMPLATE_REFERENCE = re.compile(
    r"\{\{#([a-zA-Z0-9_]{1,50}(?:\.[a-zA-Z_][a-zA-Z0-9_]{0,29}){1,10})#\}\}"
)


def as_selector(value: Sequence[str]) -> Selector:
    """A selector from any sequence of strings (DSL lists, tuples)."""
    return tuple(str(part) for part in value)


def template_references(text: str) -> list[Selector]:
    """Every ``{{#...#}}`` reference in ``text``, in order of appearance."""
    return [tuple(match.group(1).split(".")) for match in TEMPLATE_REFERENCE.finditer(text)]


def to_text(value: Any) -> str:
    """How a value reads inside a text field: strings as is, data as JSON, nothing as ''."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True)
class SystemVariables:
    """The ``sys.*`` values of one run."""

    query: str | None = None
    user_id: str | None = None
    app_id: str | None = None
    workflow_id: str | None = None
    workflow_run_id: str | None = None
    conversation_id: str | None = None
    dialogue_count: int | None = None
    files: Sequence[Mapping[str, Any]] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """The values that are set, keyed as Dify names them."""
        values: dict[str, Any] = {
            "query": self.query,
            "user_id": self.user_id,
            "app_id": self.app_id,
            "workflow_id": self.workflow_id,
            "workflow_run_id": self.workflow_run_id,
            "conversation_id": self.conversation_id,
            "dialogue_count": self.dialogue_count,
            "files": [dict(f) for f in self.files],
        }
        return {key: value for key, value in values.items() if value is not None}


SYSTEM_VARIABLE_NAMES = tuple(f.name for f in fields(SystemVariables))

_MISSING = object()


class VariablePool:
    """Values of one run (or of one iteration item, as an overlay on the run's pool).

    Writes are serialised by a lock; reads are plain dict look-ups, safe under the GIL, since
    a value is written once before any node that reads it is started.
    """

    def __init__(
        self,
        *,
        system: SystemVariables | Mapping[str, Any] | None = None,
        user_inputs: Mapping[str, Any] | None = None,
        environment: Mapping[str, Any] | None = None,
        conversation: Mapping[str, Any] | None = None,
        parent: VariablePool | None = None,
    ) -> None:
        self._parent = parent
        self._lock = threading.Lock()
        self._values: dict[str, dict[str, Any]] = {}
        self.user_inputs: dict[str, Any] = dict(user_inputs or {})
        if parent is not None:
            self.user_inputs = parent.user_inputs
            return
        sys_values = system.to_dict() if isinstance(system, SystemVariables) else system
        self._values[SYSTEM_NODE_ID] = dict(sys_values or {})
        self._values[ENVIRONMENT_NODE_ID] = dict(environment or {})
        self._values[CONVERSATION_NODE_ID] = dict(conversation or {})

    # --- reading ---------------------------------------------------------------------------

    def _lookup(self, node_id: str, name: str) -> Any:
        pool: VariablePool | None = self
        while pool is not None:
            bucket = pool._values.get(node_id)
            if bucket is not None and name in bucket:
                return bucket[name]
            pool = pool._parent
        return _MISSING

    def get(self, selector: Sequence[str]) -> Any:
        """The value at ``selector`` (nested keys walk into objects); None when absent."""
        if len(selector) < 2:
            return None
        value = self._lookup(selector[0], selector[1])
        rest = selector[2:]
        if value is _MISSING and len(selector) >= 3:
            # A dotted output name written as a template: {{#start.sys.query#}}.
            value, rest = self._lookup(selector[0], f"{selector[1]}.{selector[2]}"), selector[3:]
        if value is _MISSING:
            return None
        for key in rest:
            if isinstance(value, Mapping):
                value = value.get(key)
            elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
                value = value[int(key)]
            else:
                return None
        return value

    def has(self, selector: Sequence[str]) -> bool:
        """Whether ``[node_id, name]`` holds a value (None counts as a value)."""
        return len(selector) >= 2 and self._lookup(selector[0], selector[1]) is not _MISSING

    def render(self, text: str) -> str:
        """Replace every ``{{#node_id.name#}}`` in ``text`` with the value's text."""
        if "{{#" not in text:
            return text
        return TEMPLATE_REFERENCE.sub(
            lambda match: to_text(self.get(match.group(1).split("."))), text
        )

    def node_outputs(self, node_id: str) -> dict[str, Any]:
        """A copy of everything stored under ``node_id`` (this pool and its parents)."""
        merged: dict[str, Any] = {}
        chain: list[VariablePool] = []
        pool: VariablePool | None = self
        while pool is not None:
            chain.append(pool)
            pool = pool._parent
        for item in reversed(chain):
            merged.update(item._values.get(node_id, {}))
        return merged

    def conversation_variables(self) -> dict[str, Any]:
        """Current conversation variables (the caller persists them after the run)."""
        return self._root().node_outputs(CONVERSATION_NODE_ID)

    # --- writing ---------------------------------------------------------------------------

    def _root(self) -> VariablePool:
        pool = self
        while pool._parent is not None:
            pool = pool._parent
        return pool

    def add(self, selector: Sequence[str], value: Any) -> None:
        """Store ``value`` at ``[node_id, name]``; conversation variables go to the run's pool."""
        if len(selector) != 2:
            raise ValueError(f"a variable is written at [node_id, name], not {list(selector)}")
        target = self._root() if selector[0] == CONVERSATION_NODE_ID else self
        with target._lock:
            target._values.setdefault(selector[0], {})[selector[1]] = value

    def add_outputs(self, node_id: str, outputs: Mapping[str, Any]) -> None:
        """Store all of a node's outputs under its id."""
        with self._lock:
            self._values.setdefault(node_id, {}).update(outputs)

    def remove_node(self, node_id: str) -> None:
        """Forget a node's outputs (used when an iteration item starts afresh)."""
        with self._lock:
            self._values.pop(node_id, None)

    def child(self) -> VariablePool:
        """An overlay whose writes stay local (except conversation variables)."""
        return VariablePool(parent=self)

    # --- checkpoints -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready snapshot of the run's pool (an overlay is flattened into it)."""
        chain: list[VariablePool] = []
        pool: VariablePool | None = self
        while pool is not None:
            chain.append(pool)
            pool = pool._parent
        values: dict[str, dict[str, Any]] = {}
        for item in reversed(chain):
            with item._lock:
                for node_id, bucket in item._values.items():
                    values.setdefault(node_id, {}).update(bucket)
        return {"values": values, "user_inputs": dict(self.user_inputs)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VariablePool:
        """Rebuild a pool from :meth:`to_dict` output."""
        pool = cls(user_inputs=data.get("user_inputs") or {})
        for node_id, bucket in (data.get("values") or {}).items():
            pool._values[str(node_id)] = dict(bucket)
        return pool


def selectors_in_texts(texts: Iterable[str]) -> list[Selector]:
    """All template references in several text fields."""
    found: list[Selector] = []
    for text in texts:
        found.extend(template_references(text))
    return found
