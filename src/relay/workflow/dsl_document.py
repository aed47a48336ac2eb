"""A Dify app export as a document: read it (YAML or JSON), review it, and write one back.

Dify writes ``app`` (name, mode, description, icon), ``kind: app``, ``version``, optional
``dependencies`` (marketplace plugins), and either ``workflow`` (``graph``, ``features``,
``environment_variables``, ``conversation_variables``) for workflow and advanced-chat apps or
``model_config`` for chat, completion and agent-chat apps. :func:`read_document` checks that
shape; :func:`review` lists what relay maps and what needs attention before the app can do what
it did in Dify; :func:`write_document` produces the same shape again. Pure: no I/O.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from relay.workflow.errors import DSLError
from relay.workflow.tools.base import BUILTIN_PROVIDER_IDS, TENANT_PROVIDER_TYPES

WORKFLOW_MODES = ("workflow", "advanced-chat")
APP_MODES = (*WORKFLOW_MODES, "chat", "completion", "agent-chat")
# The DSL version relay writes: the shape of Dify's 0.1.x exports, which it reads unchanged.
EXPORT_VERSION = "0.1.5"


@dataclass(frozen=True)
class AppDocument:
    """The parts of an export relay keeps."""

    name: str
    mode: str
    version: str
    description: str = ""
    graph: dict[str, Any] | None = None
    features: dict[str, Any] = field(default_factory=dict)
    environment_variables: list[Any] = field(default_factory=list)
    conversation_variables: list[Any] = field(default_factory=list)
    model_config: dict[str, Any] | None = None
    dependencies: list[Any] = field(default_factory=list)

    @property
    def has_workflow(self) -> bool:
        """Workflow and advanced-chat apps carry a graph."""
        return self.mode in WORKFLOW_MODES


def read_document(source: str | bytes | Mapping[str, Any], *, as_json: bool = False) -> AppDocument:
    """Parse an export (YAML, or JSON when ``as_json``) and check its shape; ``DSLError`` names
    the section that is wrong."""
    document = _load(source, as_json=as_json)
    kind = document.get("kind", "app")
    if kind != "app":
        raise _bad(f"not an app export: kind is {kind!r}, expected 'app'", "kind")
    app = document.get("app")
    if not isinstance(app, Mapping):
        raise _bad("the export has no 'app' section", "app")
    mode = app.get("mode")
    if mode not in APP_MODES:
        raise _bad(f"app.mode {mode!r} is not one of {', '.join(APP_MODES)}", "app.mode")
    name = str(app.get("name") or "").strip()
    if not name:
        raise _bad("app.name is missing", "app.name")
    fields: dict[str, Any] = {
        "name": name[:255],
        "mode": str(mode),
        "version": str(document.get("version") or ""),
        "description": str(app.get("description") or ""),
        "dependencies": _list(document.get("dependencies"), "dependencies"),
    }
    if mode in WORKFLOW_MODES:
        workflow = document.get("workflow")
        if not isinstance(workflow, Mapping):
            raise _bad(f"a {mode} export needs a 'workflow' section", "workflow")
        graph = workflow.get("graph")
        if not isinstance(graph, Mapping):
            raise _bad("the export has no 'workflow.graph'", "workflow.graph")
        for part in ("nodes", "edges"):
            if not isinstance(graph.get(part), list):
                raise DSLError(
                    f"workflow.graph.{part} must be a list",
                    details={"field": f"workflow.graph.{part}"},
                )
        features = workflow.get("features") or {}
        if not isinstance(features, Mapping):
            raise _bad("workflow.features must be a mapping", "workflow.features")
        fields |= {
            "graph": dict(graph),
            "features": dict(features),
            "environment_variables": _list(
                workflow.get("environment_variables"), "workflow.environment_variables"
            ),
            "conversation_variables": _list(
                workflow.get("conversation_variables"), "workflow.conversation_variables"
            ),
        }
    else:
        config = document.get("model_config")
        if config is not None and not isinstance(config, Mapping):
            raise _bad("model_config must be a mapping", "model_config")
        fields["model_config"] = dict(config) if config is not None else None
    return AppDocument(**fields)


def write_document(doc: AppDocument) -> dict[str, Any]:
    """The export of ``doc`` in Dify's shape (what :func:`read_document` reads back)."""
    document: dict[str, Any] = {
        "app": {
            "description": doc.description,
            "mode": doc.mode,
            "name": doc.name,
        },
        "kind": "app",
        "version": EXPORT_VERSION,
    }
    if doc.dependencies:
        document["dependencies"] = list(doc.dependencies)
    if doc.has_workflow:
        document["workflow"] = {
            "conversation_variables": list(doc.conversation_variables),
            "environment_variables": list(doc.environment_variables),
            "features": dict(doc.features),
            "graph": dict(doc.graph or {"nodes": [], "edges": []}),
        }
    else:
        document["model_config"] = dict(doc.model_config or {})
    return document


def dump_yaml(document: Mapping[str, Any]) -> str:
    """YAML as Dify writes it (block style, unicode kept, keys in order)."""
    return yaml.safe_dump(dict(document), allow_unicode=True, sort_keys=False)


# --- review -------------------------------------------------------------------------------------


def attention(code: str, message: str, *, node_id: str | None = None, field: str | None = None,
              **extra: Any) -> dict[str, Any]:  # fmt: skip
    """One item that needs the user's attention (``code`` is machine-readable)."""
    return {"code": code, "node_id": node_id, "field": field, "message": message, **extra}


def mapped_summary(doc: AppDocument) -> dict[str, Any]:
    """What was taken over: node types with counts, edges, variables, features."""
    summary: dict[str, Any] = {"mode": doc.mode, "dsl_version": doc.version}
    if doc.graph is not None:
        nodes = [n for n in doc.graph.get("nodes") or [] if _node_type(n)]
        summary |= {
            "nodes": len(nodes),
            "node_types": dict(sorted(Counter(_node_type(n) for n in nodes).items())),
            "edges": len(doc.graph.get("edges") or []),
            "canvas_notes": len(doc.graph.get("nodes") or []) - len(nodes),
            "environment_variables": len(doc.environment_variables),
            "conversation_variables": len(doc.conversation_variables),
            "features": sorted(k for k, v in doc.features.items() if _enabled(v)),
        }
    else:
        summary["model_config"] = sorted((doc.model_config or {}).keys())
    return summary


def review(
    doc: AppDocument, *, known_datasets: Iterable[str], llm_provider: str
) -> list[dict[str, Any]]:
    """What needs attention: datasets unknown to this tenant, nodes that need credentials relay
    does not have, plugins, and which LLM provider relay uses for the export's models."""
    known = set(known_datasets)
    items: list[dict[str, Any]] = []
    for node_id, data in _nodes(doc):
        node_type = str(data.get("type"))
        if node_type == "knowledge-retrieval":
            for index, dataset_id in enumerate(data.get("dataset_ids") or []):
                if str(dataset_id) not in known:
                    items.append(attention(
                        "unknown_dataset",
                        f"dataset '{dataset_id}' does not exist in this tenant; retrieval finds "
                        "nothing in it until the node names one of your datasets",
                        node_id=node_id, field=f"dataset_ids[{index}]", dataset_id=str(dataset_id),
                    ))  # fmt: skip
        elif node_type == "tool":
            items.append(_tool_attention(
                node_id, str(data.get("provider_type") or "builtin"),
                str(data.get("provider_id") or data.get("provider_name") or "?"),
                str(data.get("tool_name") or "?"), "provider_id",
            ))  # fmt: skip
        elif node_type == "agent":
            items.extend(_agent_attention(node_id, data))
        elif node_type == "llm":
            model = data.get("model")
            model = model if isinstance(model, Mapping) else {}
            named = f"{model.get('provider', '?')}/{model.get('name', '?')}"
            items.append(attention(
                "llm_provider",
                f"the node names model {named}; relay runs it with its configured provider "
                f"'{llm_provider}' (RELAY_WORKFLOW_LLM_PROVIDER)",
                node_id=node_id, field="model", model=named,
            ))  # fmt: skip
    for dataset_id in _config_datasets(doc.model_config):
        if dataset_id not in known:
            items.append(attention(
                "unknown_dataset", f"dataset '{dataset_id}' does not exist in this tenant",
                field="model_config.dataset_configs", dataset_id=dataset_id,
            ))  # fmt: skip
    for index, dependency in enumerate(doc.dependencies):
        value = dependency.get("value") if isinstance(dependency, Mapping) else None
        value = value if isinstance(value, Mapping) else {}
        plugin = value.get("marketplace_plugin_unique_identifier") or value.get(
            "plugin_unique_identifier"
        )
        items.append(attention(
            "plugin_dependency",
            f"the app depends on Dify plugin '{plugin or dependency}'; relay has no plugins "
            "(models run on its configured provider)",
            field=f"dependencies[{index}]",
        ))  # fmt: skip
    return items


def _tool_attention(
    node_id: str, provider_type: str, provider: str, tool: str, field: str
) -> dict[str, Any]:
    """Whether relay has the provider a tool names, and where its credentials go."""
    short = provider.rstrip("/").rsplit("/", 1)[-1]
    if provider_type == "workflow":
        runs = "it runs the tenant's published workflow app of that id (workflow-as-tool)"
    elif provider_type in ("builtin", "plugin") and short in BUILTIN_PROVIDER_IDS:
        runs = (
            f"relay runs it with its built-in provider '{short}'; credentials it takes (an API "
            f"key) are set per tenant with PUT /v1/tool-providers/builtin/{short}"
        )
    elif provider_type in TENANT_PROVIDER_TYPES:
        runs = (
            f"set the {provider_type} provider up for this tenant with PUT "
            f"/v1/tool-providers/{provider_type}/{provider}, or the node fails when it runs"
        )
    else:
        runs = (
            f"tool provider '{provider}' ({provider_type}) is not installed in relay: the node "
            f"fails when it runs (built-in: {', '.join(BUILTIN_PROVIDER_IDS)})"
        )
    return attention(
        "missing_tool_credentials",
        f"uses tool '{tool}' of provider '{provider}', whose credentials live in Dify, not in "
        f"the export; {runs}",
        node_id=node_id, field=field, provider=provider,
    )  # fmt: skip


def _agent_attention(node_id: str, data: Mapping[str, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    strategy = str(data.get("agent_strategy_name") or "?")
    plugin = str(data.get("agent_strategy_provider_name") or "")
    if (plugin and plugin.rstrip("/").rsplit("/", 1)[-1] != "agent") or strategy.replace(
        "-", "_"
    ).lower() not in ("function_calling", "functioncalling", "react"):
        items.append(attention(
            "unsupported_agent_strategy",
            f"agent strategy '{strategy}' of plugin '{plugin or '?'}' is not supported: relay "
            "runs the function_calling and ReAct strategies of langgenius/agent/agent; the node "
            "fails when it runs",
            node_id=node_id, field="agent_strategy_name",
        ))  # fmt: skip
    parameters = data.get("agent_parameters")
    tools = parameters.get("tools") if isinstance(parameters, Mapping) else None
    listed = tools.get("value") if isinstance(tools, Mapping) else None
    for index, tool in enumerate(listed if isinstance(listed, list) else []):
        if isinstance(tool, Mapping) and tool.get("enabled", True):
            items.append(_tool_attention(
                node_id, str(tool.get("type") or "builtin"), str(tool.get("provider_name") or "?"),
                str(tool.get("tool_name") or "?"), f"agent_parameters.tools[{index}]",
            ))  # fmt: skip
    return items


def _nodes(doc: AppDocument) -> Iterable[tuple[str, Mapping[str, Any]]]:
    for raw in (doc.graph or {}).get("nodes") or []:
        data = raw.get("data") if isinstance(raw, Mapping) else None
        if isinstance(data, Mapping) and data.get("type"):
            yield str(raw.get("id")), data


def _config_datasets(config: Mapping[str, Any] | None) -> list[str]:
    # Dify's chat apps: model_config.dataset_configs.datasets.datasets[].dataset.id
    datasets = ((config or {}).get("dataset_configs") or {}).get("datasets") or {}
    found: list[str] = []
    for entry in datasets.get("datasets") or [] if isinstance(datasets, Mapping) else []:
        dataset = entry.get("dataset") if isinstance(entry, Mapping) else None
        if isinstance(dataset, Mapping) and dataset.get("id"):
            found.append(str(dataset["id"]))
    return found


def _node_type(raw: Any) -> str:
    data = raw.get("data") if isinstance(raw, Mapping) else None
    return str(data.get("type") or "") if isinstance(data, Mapping) else ""


def _enabled(value: Any) -> bool:
    if isinstance(value, Mapping):
        return bool(value.get("enabled"))
    return bool(value)


def _bad(message: str, field: str) -> DSLError:
    return DSLError(message, details={"field": field})


def _list(value: Any, name: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise DSLError(f"{name} must be a list", details={"field": name})
    return value


def _load(source: str | bytes | Mapping[str, Any], *, as_json: bool) -> Mapping[str, Any]:
    if isinstance(source, Mapping):
        return source
    if not source.strip():
        raise DSLError("the export is empty")
    try:
        document = json.loads(source) if as_json else yaml.safe_load(source)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise DSLError(f"the export is not valid {'JSON' if as_json else 'YAML'}: {exc}") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" (line {where.line + 1}, column {where.column + 1})" if where is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise DSLError(f"the export is not valid YAML{at}: {problem}") from None
    if not isinstance(document, Mapping):
        raise DSLError(
            "the export must be a mapping with 'app', 'kind', 'version' and 'workflow' "
            f"(got {type(document).__name__})"
        )
    # YAML has dates and other types JSON lacks; the app is stored as JSON, so as strings.
    normalised: dict[str, Any] = json.loads(json.dumps(document, default=str))
    return normalised
