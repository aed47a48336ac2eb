"""The workflow subsystem's branch of relay's exception tree."""

from __future__ import annotations

from typing import Any

from relay.errors import RelayError


class WorkflowError(RelayError):
    """Base for every error the workflow engine raises on purpose."""

    code = "workflow_error"


class DSLError(WorkflowError):
    """A Dify DSL document cannot be read (not YAML, wrong kind, unsupported app mode)."""

    status = 400
    code = "invalid_dsl"


class GraphValidationError(WorkflowError):
    """The graph is structurally wrong; ``details`` lists every problem found.

    ``problems`` has the same problems in structured form, one ``{"node_id", "field",
    "message"}`` each (``node_id``/``field`` None where a problem has no single node or field),
    so that an API can name the node and field that need fixing.
    """

    status = 400
    code = "invalid_graph"

    def __init__(
        self,
        message: str,
        *,
        details: Any = None,
        problems: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message, details=details)
        if problems is None:
            problems = [{"node_id": None, "field": None, "message": message}]
        self.problems = problems


class UnsupportedNodeTypeError(GraphValidationError):
    """A node has a type relay does not run (for example ``tool`` or ``agent``)."""

    code = "unsupported_node_type"


class NodeError(WorkflowError):
    """A node failed; the engine turns it into NodeRunFailed (or handles it by strategy)."""

    code = "node_error"


class NodeStopped(WorkflowError):
    """Raised inside a node when the run was asked to stop; the node ends without a result."""

    code = "node_stopped"


class CheckpointError(WorkflowError):
    """A checkpoint does not belong to this graph or cannot be resumed."""

    status = 409
    code = "invalid_checkpoint"
