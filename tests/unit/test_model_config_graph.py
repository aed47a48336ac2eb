"""Completion and basic chat apps: the graph built from a Dify model config, and its checks."""

from __future__ import annotations

from typing import Any

import pytest

from relay.services.workflow_check import graph_problems
from relay.workflow.dsl import graph_from_dict
from relay.workflow.model_config import (
    InvalidModelConfig,
    features,
    graph_from_model_config,
    user_input_form,
    validate_model_config,
    with_defaults,
)

MODEL = {"provider": "openai", "name": "gpt-4o", "mode": "chat", "completion_params": {}}


def config(**extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "pre_prompt": "Translate {{text}} into {{ lang }}. Keep {{unknown}}.",
        "user_input_form": [
            {"paragraph": {"label": "Text", "variable": "text", "required": True}},
            {
                "select": {
                    "label": "Language",
                    "variable": "lang",
                    "options": ["fr", "de"],
                    "default": "fr",
                }
            },
        ],
        **extra,
    }


def _nodes(graph: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["id"]: n["data"] for n in graph["nodes"]}


def test_a_completion_app_becomes_start_llm_end() -> None:
    graph = graph_from_model_config("completion", config())
    nodes = _nodes(graph)
    assert [n["type"] for n in nodes.values()] == ["start", "llm", "end"]
    assert [(e["source"], e["target"]) for e in graph["edges"]] == [
        ("start", "llm"),
        ("llm", "end"),
    ]
    start = nodes["start"]["variables"]
    assert [(v["variable"], v["type"], v["required"]) for v in start] == [
        ("text", "paragraph", True),
        ("lang", "select", False),
    ]
    assert start[1]["options"] == ["fr", "de"]
    llm = nodes["llm"]
    assert llm["model"] == MODEL
    # Declared variables become selectors of the start node; others stay as written.
    assert llm["prompt_template"] == [
        {
            "role": "user",
            "text": "Translate {{#start.text#}} into {{#start.lang#}}. Keep {{unknown}}.",
        }
    ]
    assert "memory" not in llm
    assert nodes["end"]["outputs"] == [{"variable": "answer", "value_selector": ["llm", "text"]}]
    # The engine takes it, and relay's graph check finds nothing wrong.
    assert graph_problems(graph) == []
    graph_from_dict(graph)


def test_a_chat_app_becomes_start_llm_with_memory_answer() -> None:
    graph = graph_from_model_config("chat", config(pre_prompt="You are terse. User: {{query}}"))
    nodes = _nodes(graph)
    assert [n["type"] for n in nodes.values()] == ["start", "llm", "answer"]
    llm = nodes["llm"]
    assert llm["prompt_template"] == [
        {"role": "system", "text": "You are terse. User: {{#sys.query#}}"}
    ]
    assert llm["memory"]["query_prompt_template"] == "{{#sys.query#}}"
    assert nodes["answer"]["answer"] == "{{#llm.text#}}"
    assert graph_problems(graph) == []


def test_a_chat_app_without_a_prompt_sends_the_conversation_only() -> None:
    graph = graph_from_model_config("chat", {"model": MODEL})
    assert _nodes(graph)["llm"]["prompt_template"] == []
    assert _nodes(graph)["start"]["variables"] == []


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"model": None}, "model"),
        ({"model": "gpt-4o"}, "model"),
        ({"model": {**MODEL, "provider": ""}}, "model.provider"),
        ({"model": {**MODEL, "name": 3}}, "model.name"),
        ({"model": {**MODEL, "mode": "embedding"}}, "model.mode"),
        ({"model": {**MODEL, "completion_params": []}}, "model.completion_params"),
        ({"model": {**MODEL, "completion_params": {"stop": list("abcde")}}},
         "model.completion_params.stop"),
        ({"pre_prompt": 7}, "pre_prompt"),
        ({"prompt_type": "advanced"}, "prompt_type"),
        ({"user_input_form": {"text-input": {}}}, "user_input_form"),
        ({"user_input_form": [{"file": {"variable": "f", "label": "F"}}]}, "user_input_form[0]"),
        ({"user_input_form": [{"text-input": {"variable": "1x", "label": "x"}}]},
         "user_input_form[0].variable"),
        ({"user_input_form": [{"text-input": {"variable": "a", "label": "a"}},
                              {"number": {"variable": "a", "label": "b"}}]},
         "user_input_form[1].variable"),
        ({"user_input_form": [{"text-input": {"variable": "a", "required": "yes"}}]},
         "user_input_form[0].required"),
        ({"user_input_form": [{"select": {"variable": "a", "options": ["x"], "default": "y"}}]},
         "user_input_form[0].default"),
        ({"suggested_questions": "why?"}, "suggested_questions"),
        ({"more_like_this": True}, "more_like_this"),
        ({"file_upload": {"enabled": True}}, "file_upload"),
        ({"external_data_tools": [{"enabled": True, "type": "api"}]}, "external_data_tools"),
    ],
)  # fmt: skip
def test_a_config_that_cannot_run_names_its_field(bad: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidModelConfig) as caught:
        graph_from_model_config("completion", {**config(), **bad})
    assert caught.value.field == field
    assert caught.value.status == 400
    assert caught.value.message.startswith(f"model_config.{field}: ")


def test_a_saved_config_is_checked_for_what_it_has() -> None:
    # Saving: no model yet, or relay's older free-form model name, is accepted...
    validate_model_config({"pre_prompt": "Hi"}, complete=False)
    validate_model_config({"model": "gpt-4o", "dataset_configs": {}}, complete=False)
    # ...but a field in Dify's shape must be right, and a run needs the model object.
    with pytest.raises(InvalidModelConfig, match=r"model\.name"):
        validate_model_config({"model": {"provider": "openai"}}, complete=False)
    with pytest.raises(InvalidModelConfig, match="model"):
        validate_model_config({"pre_prompt": "Hi"}, complete=True)


def test_datasets_are_ignored_not_refused() -> None:
    enabled = {"datasets": {"datasets": [{"dataset": {"id": "d", "enabled": True}}]}}
    graph = graph_from_model_config("completion", config(dataset_configs=enabled))
    assert "knowledge-retrieval" not in [n["data"]["type"] for n in graph["nodes"]]


def test_defaults_fill_missing_inputs_only() -> None:
    assert with_defaults(config(), {"text": "hello"}) == {"text": "hello", "lang": "fr"}
    assert with_defaults(config(), {"text": "x", "lang": "de"}) == {"text": "x", "lang": "de"}
    assert with_defaults(config(), {"lang": ""})["lang"] == "fr"


def test_parameters_read_from_the_config() -> None:
    shown = features(
        config(
            opening_statement="Hello!",
            suggested_questions=["What can you do?"],
            suggested_questions_after_answer={"enabled": True},
            more_like_this={"enabled": False},
        )
    )
    assert shown["opening_statement"] == "Hello!"
    assert shown["suggested_questions"] == ["What can you do?"]
    assert shown["suggested_questions_after_answer"] == {"enabled": True}
    assert shown["more_like_this"] == {"enabled": False}
    assert features(None) == {"opening_statement": "", "suggested_questions": []}
    form = user_input_form(config())
    assert form[0] == {
        "paragraph": {"label": "Text", "variable": "text", "required": True, "default": ""}
    }
    assert form[1]["select"]["options"] == ["fr", "de"]
    assert form[1]["select"]["default"] == "fr"


def test_only_completion_and_chat_apps_are_built() -> None:
    with pytest.raises(ValueError, match="workflow"):
        graph_from_model_config("workflow", config())
