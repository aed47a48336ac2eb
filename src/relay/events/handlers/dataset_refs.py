"""Which datasets an app retrieves from, read from its model config or its workflow graph.

Pure functions over the JSON the app stores (no IO), so the shapes they accept are unit-tested
on their own. Both are lenient: configs are user-edited JSON, and a malformed entry is skipped
rather than failing the save that emitted the event.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

KNOWLEDGE_RETRIEVAL = "knowledge-retrieval"


def dataset_ids_from_model_config(model_config: Mapping[str, Any] | None) -> frozenset[str]:
    """Dataset ids a chat/completion/agent app's model config references.

    Accepts Dify's shape ``dataset_configs.datasets.datasets = [{"dataset": {"id", "enabled"}}]``,
    agent tools ``agent_mode.tools = [{"dataset": {"id", "enabled"}}]`` and a flat
    ``dataset_ids`` list. An entry explicitly ``"enabled": false`` is not retrieved from, so it
    does not count.
    """
    if not isinstance(model_config, Mapping):
        return frozenset()
    ids: set[str] = set()
    datasets = _mapping(_mapping(model_config.get("dataset_configs")).get("datasets"))
    ids.update(_dataset_entries(datasets.get("datasets")))
    ids.update(_dataset_entries(_mapping(model_config.get("agent_mode")).get("tools")))
    ids.update(_ids(model_config.get("dataset_ids")))
    return frozenset(ids)


def dataset_ids_from_graph(graph: Mapping[str, Any] | None) -> frozenset[str]:
    """Dataset ids of every knowledge-retrieval node (``data.dataset_ids``) of a workflow graph.

    Takes the graph itself (``{"nodes": [...], "edges": [...]}``) or a workflow holding it under
    ``graph``.
    """
    if not isinstance(graph, Mapping):
        return frozenset()
    if "nodes" not in graph and isinstance(graph.get("graph"), Mapping):
        graph = graph["graph"]
    nodes = graph.get("nodes")
    if not isinstance(nodes, list):
        return frozenset()
    ids: set[str] = set()
    for node in nodes:
        data = _mapping(_mapping(node).get("data"))
        if data.get("type") == KNOWLEDGE_RETRIEVAL:
            ids.update(_ids(data.get("dataset_ids")))
    return frozenset(ids)


def _dataset_entries(entries: Any) -> Iterable[str]:
    if not isinstance(entries, list):
        return
    for entry in entries:
        dataset = _mapping(_mapping(entry).get("dataset"))
        if dataset.get("enabled", True) is False:
            continue
        yield from _ids([dataset.get("id")])


def _ids(values: Any) -> Iterable[str]:
    if not isinstance(values, list | tuple):
        return
    for value in values:
        if isinstance(value, str) and value.strip():
            yield value.strip()


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
