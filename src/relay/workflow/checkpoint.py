"""The serialisable state of a paused run, from which :meth:`GraphEngine.resume` continues."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

CHECKPOINT_VERSION = 1


class RunCheckpoint(BaseModel):
    """Everything needed to continue a run at a node boundary, as plain JSON data.

    A checkpoint is taken only when no node is running, so node states are all final or
    pending; ``ready`` lists nodes whose incoming edges were resolved but which had not been
    started yet, in dispatch order.
    """

    model_config = ConfigDict(frozen=True)

    version: int = CHECKPOINT_VERSION
    run_id: str
    graph_fingerprint: str
    created_at: datetime
    variable_pool: dict[str, Any]
    node_states: dict[str, str]
    edge_states: dict[str, str] = Field(description="edge id -> pending | taken | skipped")
    ready: list[str]
    execution_ids: dict[str, str]
    steps: int
    exceptions_count: int
    total_tokens: int
    elapsed: float = Field(description="seconds spent running before this checkpoint")
    end_outputs: dict[str, Any]
    response: dict[str, Any] = Field(description="answer/end streaming state")
