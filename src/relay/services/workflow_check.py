"""Checks a workflow graph where the mistake is made: on saving a draft, publishing and running.

Every problem names the node and the field of its data (``details.problems``), so a client can
point at what to fix instead of finding out from a failed run. The same checks run before a run
starts, on the run's inputs against the start node's declared variables.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from relay.errors import BadRequest
from relay.workflow import GraphValidationError, WorkflowError, default_registry, graph_from_dict
from relay.workflow.graph import validate_graph
from relay.workflow.nodes.start import check_inputs


class InvalidWorkflow(BadRequest):
    """The workflow graph cannot run (unknown node type, cycle, dangling reference, bad data)."""

    code = "invalid_workflow"


class InvalidInputs(BadRequest):
    """The run's inputs do not fit the start node's declared variables."""

    code = "invalid_inputs"


def graph_problems(
    graph: Mapping[str, Any],
    *,
    environment_names: Iterable[str] | None = None,
    conversation_names: Iterable[str] | None = None,
    vision_supported: bool = True,
) -> list[dict[str, Any]]:
    """Every problem of ``graph`` as ``{"node_id", "field", "message"}``; empty when it can run."""
    try:
        validate_graph(
            graph_from_dict(graph),
            default_registry(),
            environment_names=environment_names,
            conversation_names=conversation_names,
            vision_supported=vision_supported,
        )
    except GraphValidationError as exc:
        return list(exc.problems)
    except WorkflowError as exc:
        return [{"node_id": None, "field": None, "message": exc.message}]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        # A node without ``id``, an edge without ``source``: the shape itself is wrong.
        return [{"node_id": None, "field": None, "message": f"malformed graph: {exc!r}"}]
    return []


def check_graph(
    graph: Mapping[str, Any],
    *,
    what: str = "the workflow",
    environment_names: Iterable[str] | None = None,
    conversation_names: Iterable[str] | None = None,
    vision_supported: bool = True,
) -> None:
    """Raise :class:`InvalidWorkflow` (400) naming each node and field that is wrong."""
    problems = graph_problems(
        graph,
        environment_names=environment_names,
        conversation_names=conversation_names,
        vision_supported=vision_supported,
    )
    if not problems:
        return
    first = problems[0]
    where = ""
    if first.get("node_id"):
        where = f" (node '{first['node_id']}'" + (
            f", field '{first['field']}')" if first.get("field") else ")"
        )
    more = f"; and {len(problems) - 1} more problem(s)" if len(problems) > 1 else ""
    raise InvalidWorkflow(
        f"{what} is invalid: {first['message']}{where}{more}", details={"problems": problems}
    )


def declared_names(variables: Any) -> list[str]:
    """Names of Dify's ``[{name, value, value_type}]`` variable declarations."""
    return [
        str(variable["name"])
        for variable in variables or []
        if isinstance(variable, Mapping) and variable.get("name")
    ]


def declared_values(variables: Any) -> dict[str, Any]:
    """Dify's ``[{name, value, value_type}]`` declarations as ``{name: value}``."""
    return {
        str(variable["name"]): variable.get("value")
        for variable in variables or []
        if isinstance(variable, Mapping) and variable.get("name")
    }


def check_run_inputs(graph: Mapping[str, Any], inputs: Mapping[str, Any]) -> None:
    """Raise :class:`InvalidInputs` (400) naming each missing or invalid input variable."""
    for raw in graph.get("nodes") or []:
        data = raw.get("data") if isinstance(raw, Mapping) else None
        if isinstance(data, Mapping) and data.get("type") == "start":
            problems = check_inputs(data, inputs)
            if problems:
                listed = "; ".join(f"{name}: {message}" for name, message in problems.items())
                raise InvalidInputs(
                    f"invalid run inputs: {listed}",
                    details={
                        "inputs": [
                            {"variable": name, "message": message}
                            for name, message in problems.items()
                        ]
                    },
                )
            return
