"""The pure extraction of dataset ids from model configs and workflow graphs."""

from __future__ import annotations

from typing import Any

import pytest

from relay.config import Plan
from relay.events.handlers.dataset_refs import dataset_ids_from_graph, dataset_ids_from_model_config
from relay.events.handlers.document_indexing import indexing_queue
from relay.events.handlers.tool_parameters_cache import tool_params_pattern


def dify_config(*entries: dict[str, Any]) -> dict[str, Any]:
    return {
        "dataset_configs": {
            "retrieval_model": "multiple",
            "datasets": {"strategy": "router", "datasets": [{"dataset": e} for e in entries]},
        }
    }


def test_difys_model_config_shape() -> None:
    config = dify_config({"enabled": True, "id": "d1"}, {"enabled": True, "id": "d2"})
    assert dataset_ids_from_model_config(config) == {"d1", "d2"}


def test_disabled_entries_do_not_count_and_missing_enabled_does() -> None:
    config = dify_config({"enabled": False, "id": "off"}, {"id": "implicit"})
    assert dataset_ids_from_model_config(config) == {"implicit"}


def test_flat_list_and_agent_tools_are_merged_without_duplicates() -> None:
    config = {
        **dify_config({"enabled": True, "id": "d1"}),
        "dataset_ids": ["d1", "d2", " d3 "],
        "agent_mode": {"tools": [{"dataset": {"enabled": True, "id": "d4"}}, {"other": {}}]},
    }
    assert dataset_ids_from_model_config(config) == {"d1", "d2", "d3", "d4"}


@pytest.mark.parametrize(
    "config",
    [
        None,
        {},
        {"dataset_configs": None},
        {"dataset_configs": {"datasets": "nope"}},
        {"dataset_configs": {"datasets": {"datasets": [None, 1, "x", {"dataset": None}]}}},
        {"dataset_configs": {"datasets": {"datasets": [{"dataset": {"id": 42}}]}}},
        {"dataset_ids": "d1"},
        {"dataset_ids": [None, "", "  ", 3]},
        {"agent_mode": {"tools": "all"}},
    ],
)
def test_malformed_configs_yield_nothing(config: Any) -> None:
    assert dataset_ids_from_model_config(config) == frozenset()


def test_knowledge_retrieval_nodes_of_a_graph() -> None:
    graph = {
        "nodes": [
            {"id": "start", "data": {"type": "start"}},
            {"id": "kr1", "data": {"type": "knowledge-retrieval", "dataset_ids": ["d1", "d2"]}},
            {"id": "kr2", "data": {"type": "knowledge-retrieval", "dataset_ids": ["d2", "d3"]}},
            {"id": "llm", "data": {"type": "llm", "dataset_ids": ["not-a-retrieval"]}},
        ],
        "edges": [],
    }
    assert dataset_ids_from_graph(graph) == {"d1", "d2", "d3"}
    assert dataset_ids_from_graph({"graph": graph, "features": {}}) == {"d1", "d2", "d3"}


@pytest.mark.parametrize(
    "graph",
    [
        None,
        {},
        {"nodes": "x"},
        {"nodes": [None, "node", {"data": None}, {"data": {"type": "knowledge-retrieval"}}]},
        {"nodes": [{"data": {"type": "knowledge-retrieval", "dataset_ids": "d1"}}]},
    ],
)
def test_malformed_graphs_yield_nothing(graph: Any) -> None:
    assert dataset_ids_from_graph(graph) == frozenset()


def test_indexing_queue_by_plan() -> None:
    assert indexing_queue(Plan.SANDBOX) == "dataset"
    assert indexing_queue(None) == "dataset"
    for plan in (Plan.PROFESSIONAL, Plan.TEAM, Plan.ENTERPRISE):
        assert indexing_queue(plan) == "priority_dataset"


def test_tool_params_pattern_matches_glob_characters_literally() -> None:
    assert tool_params_pattern("app-1") == "relay:tool_params:app-1:*"
    assert tool_params_pattern("a*b?[c]") == r"relay:tool_params:a\*b\?\[c\]:*"


def test_the_indexing_queues_are_declared_and_have_consumers_checked() -> None:
    from relay import catalog

    spec = catalog.task_spec("relay.dataset.index_documents")
    chosen = {indexing_queue(plan) for plan in Plan}
    assert chosen == {spec.queue, *spec.alt_queues}
    assert chosen <= set(catalog.queue_names())
    assert chosen <= set(catalog.routed_queues()), "`relay queues check` must cover both"
