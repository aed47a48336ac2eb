"""Completion and basic chat apps as graphs: a Dify model config turned into a workflow graph.

Dify's completion and chat apps carry no graph; they are described by a model config: ``model``
(``provider``, ``name``, ``mode``, ``completion_params``), ``pre_prompt`` (the prompt, with
``{{variable}}`` placeholders), ``user_input_form`` (the form's ``text-input``, ``paragraph``,
``select`` and ``number`` variables, each with ``label``, ``variable``, ``required``,
``default``...), and the features a client reads from ``/parameters`` (``opening_statement``,
``suggested_questions``, ``suggested_questions_after_answer``, ``more_like_this``...). relay runs
such an app through its workflow engine: :func:`graph_from_model_config` builds the graph each run
executes, in Dify DSL form, the way Dify converts these apps into workflows:

- completion: ``start`` (the form's variables) -> ``llm`` (the ``pre_prompt`` as the user
  message, ``{{var}}`` turned into ``{{#start.var#}}``) -> ``end`` (output ``answer``);
- chat: ``start`` -> ``llm`` (the ``pre_prompt`` as the system message, then the conversation's
  turns and ``sys.query`` through the node's memory) -> ``answer``.

``{{query}}`` in a chat prompt is the user's message (``{{#sys.query#}}``). Knowledge
(``dataset_configs``, ``dataset_query_variable``, ``retriever_resource``) is ignored: the
datasets a config names are linked to the app (for the dataset handlers), but a completion or
chat app's run retrieves nothing; use an advanced-chat or workflow app with a
knowledge-retrieval node for that. External data tools, file inputs and ``prompt_type:
advanced`` are refused with a message naming the field, rather than run without them.
Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from relay.errors import BadRequest

COMPLETION, CHAT = "completion", "chat"
FORM_TYPES = frozenset({"text-input", "paragraph", "select", "number"})
START, LLM, END, ANSWER = "start", "llm", "end", "answer"

# Dify's rule for a form variable's name: letters, digits and underscores, not a digit first.
_VARIABLE = re.compile(r"^(?!\d)\w{1,100}$")
_PLACEHOLDER = re.compile(r"\{\{\s*([^{}#\s]+)\s*\}\}")
# Features a client reads from /parameters: each an object with an ``enabled`` flag.
_FEATURES = (
    "suggested_questions_after_answer",
    "more_like_this",
    "speech_to_text",
    "text_to_speech",
    "retriever_resource",
    "sensitive_word_avoidance",
    "file_upload",
)


class InvalidModelConfig(BadRequest):
    """The app's model config cannot run: ``details.field`` names the field that is wrong."""

    code = "invalid_model_config"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"model_config.{field}: {message}", details={"field": field})
        self.field = field


def validate_model_config(config: Mapping[str, Any], *, complete: bool) -> None:
    """Raise :class:`InvalidModelConfig` for the first field of ``config`` that is wrong.

    ``complete=False`` (a config being saved) checks the fields that are present; ``True`` (a
    run about to start) also requires what a run needs: a ``model`` object with provider and name.
    A ``model`` that is not an object is only refused when a run needs it.
    """
    if not isinstance(config, Mapping):
        raise InvalidModelConfig("", "must be an object")
    model = config.get("model")
    if isinstance(model, Mapping) or complete:
        _check_model(model)
    if "pre_prompt" in config and not isinstance(config["pre_prompt"], str | None):
        raise InvalidModelConfig("pre_prompt", "must be a string")
    prompt_type = config.get("prompt_type", "simple")
    if prompt_type not in ("simple", "advanced", None):
        raise InvalidModelConfig("prompt_type", "must be 'simple' or 'advanced'")
    if prompt_type == "advanced":
        raise InvalidModelConfig(
            "prompt_type", "'advanced' prompts are not run by relay; use 'simple' with pre_prompt"
        )
    _check_form(config.get("user_input_form"))
    if not isinstance(config.get("opening_statement", "") or "", str):
        raise InvalidModelConfig("opening_statement", "must be a string")
    questions = config.get("suggested_questions") or []
    if not isinstance(questions, list) or not all(isinstance(q, str) for q in questions):
        raise InvalidModelConfig("suggested_questions", "must be a list of strings")
    for name in _FEATURES:
        value = config.get(name)
        if value is None:
            continue
        if not isinstance(value, Mapping) or not isinstance(value.get("enabled", False), bool):
            raise InvalidModelConfig(name, "must be an object with a boolean 'enabled'")
    if _enabled(config.get("file_upload")):
        raise InvalidModelConfig("file_upload", "file inputs are not run by completion/chat apps")
    for name in ("external_data_tools",):
        if any(isinstance(t, Mapping) and t.get("enabled") for t in config.get(name) or []):
            raise InvalidModelConfig(name, "external data tools are not run by relay")


def _check_model(model: Any) -> None:
    if not isinstance(model, Mapping):
        raise InvalidModelConfig(
            "model", "must be an object {provider, name, mode, completion_params}"
        )
    for key in ("provider", "name"):
        if not isinstance(model.get(key), str) or not model.get(key):
            raise InvalidModelConfig(f"model.{key}", "is required (a non-empty string)")
    if model.get("mode", "chat") not in ("chat", "completion"):
        raise InvalidModelConfig("model.mode", "must be 'chat' or 'completion'")
    params = model.get("completion_params", {})
    if not isinstance(params, Mapping):
        raise InvalidModelConfig("model.completion_params", "must be an object")
    stop = params.get("stop", [])
    if not isinstance(stop, list) or len(stop) > 4:
        raise InvalidModelConfig("model.completion_params.stop", "must be a list of at most 4")


def _check_form(form: Any) -> None:
    if form is None:
        return
    if not isinstance(form, list):
        raise InvalidModelConfig("user_input_form", "must be a list of objects")
    seen: set[str] = set()
    for i, item in enumerate(form):
        where = f"user_input_form[{i}]"
        if not isinstance(item, Mapping) or len(item) != 1:
            raise InvalidModelConfig(where, "must be an object with one key, the input's type")
        kind, entry = next(iter(item.items()))
        if kind not in FORM_TYPES:
            raise InvalidModelConfig(
                where, f"type {kind!r} is not one of {', '.join(sorted(FORM_TYPES))}"
            )
        if not isinstance(entry, Mapping):
            raise InvalidModelConfig(f"{where}.{kind}", "must be an object")
        name = entry.get("variable")
        if not isinstance(name, str) or not _VARIABLE.match(name):
            raise InvalidModelConfig(
                f"{where}.variable", "must be letters, digits or '_', not starting with a digit"
            )
        if name in seen:
            raise InvalidModelConfig(f"{where}.variable", f"{name!r} is declared twice")
        seen.add(name)
        if not isinstance(entry.get("label", ""), str):
            raise InvalidModelConfig(f"{where}.label", "must be a string")
        if not isinstance(entry.get("required", False), bool):
            raise InvalidModelConfig(f"{where}.required", "must be a boolean")
        if kind == "select":
            options = entry.get("options") or []
            if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
                raise InvalidModelConfig(f"{where}.options", "must be a list of strings")
            default = entry.get("default")
            if default and default not in options:
                raise InvalidModelConfig(f"{where}.default", "must be one of the options")


def _enabled(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value.get("enabled"))


def form_variables(config: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The form's variables as ``(type, entry)`` pairs, in order."""
    out: list[tuple[str, dict[str, Any]]] = []
    for item in config.get("user_input_form") or []:
        kind, entry = next(iter(item.items()))
        out.append((str(kind), dict(entry)))
    return out


def with_defaults(config: Mapping[str, Any], inputs: Mapping[str, Any]) -> dict[str, Any]:
    """``inputs`` with each missing or empty form variable set to its declared ``default``."""
    out = dict(inputs)
    for _, entry in form_variables(config):
        name, default = entry["variable"], entry.get("default")
        if out.get(name) in (None, "") and default not in (None, ""):
            out[name] = default
    return out


def _selectors(template: str, names: set[str], mode: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in names:
            return "{{#" + START + "." + name + "#}}"
        if name == "query":
            return "{{#sys.query#}}"
        return match.group(0)

    return _PLACEHOLDER.sub(replace, template)


def graph_from_model_config(mode: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The graph a run of a ``completion`` or ``chat`` app executes (validated first)."""
    if mode not in (COMPLETION, CHAT):
        raise ValueError(f"only completion and chat apps are built from a model config: {mode}")
    validate_model_config(config, complete=True)
    model = config["model"]
    form = form_variables(config)
    names = {entry["variable"] for _, entry in form}
    variables = [
        {
            "variable": entry["variable"],
            "label": entry.get("label") or entry["variable"],
            "type": kind,
            "required": bool(entry.get("required", False)),
            **({"max_length": entry["max_length"]} if entry.get("max_length") else {}),
            **({"options": list(entry.get("options") or [])} if kind == "select" else {}),
        }
        for kind, entry in form
    ]
    prompt = _selectors(str(config.get("pre_prompt") or ""), names, mode)
    llm: dict[str, Any] = {
        "type": LLM,
        "title": "LLM",
        "model": {
            "provider": model["provider"],
            "name": model["name"],
            "mode": model.get("mode") or "chat",
            "completion_params": dict(model.get("completion_params") or {}),
        },
        "context": {"enabled": False},
        "vision": {"enabled": False},
    }
    if mode == COMPLETION:
        # Dify's completion prompt is the pre_prompt alone, sent as the user's message.
        llm["prompt_template"] = [{"role": "user", "text": prompt}]
        last: dict[str, Any] = {
            "id": END,
            "data": {
                "type": END,
                "title": "END",
                "outputs": [{"variable": "answer", "value_selector": [LLM, "text"]}],
            },
        }
    else:
        # Basic chat: the pre_prompt is the system message; memory adds the conversation's
        # turns and then the user's query.
        llm["prompt_template"] = [{"role": "system", "text": prompt}] if prompt.strip() else []
        llm["memory"] = {"window": {"enabled": False}, "query_prompt_template": "{{#sys.query#}}"}
        last = {
            "id": ANSWER,
            "data": {"type": ANSWER, "title": "ANSWER", "answer": "{{#llm.text#}}"},
        }
    nodes = [
        {"id": START, "data": {"type": START, "title": "START", "variables": variables}},
        {"id": LLM, "data": llm},
        last,
    ]
    edges = [
        {"id": f"{START}-{LLM}", "source": START, "target": LLM},
        {"id": f"{LLM}-{last['id']}", "source": LLM, "target": last["id"]},
    ]
    return {"nodes": nodes, "edges": edges}


def features(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """What ``/parameters`` shows of a completion or chat app, from its model config."""
    config = config or {}
    out: dict[str, Any] = {
        "opening_statement": str(config.get("opening_statement") or ""),
        "suggested_questions": list(config.get("suggested_questions") or []),
    }
    for name in _FEATURES:
        value = config.get(name)
        if isinstance(value, Mapping):
            out[name] = dict(value)
    return out


def user_input_form(config: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The form in Dify's ``/parameters`` shape (``[{type: {label, variable, required, ...}}]``)."""
    out: list[dict[str, Any]] = []
    for kind, entry in form_variables(config or {}):
        item = {
            "label": entry.get("label") or entry["variable"],
            "variable": entry["variable"],
            "required": bool(entry.get("required", False)),
            "default": entry.get("default", ""),
        }
        if entry.get("max_length") is not None:
            item["max_length"] = entry["max_length"]
        if kind == "select":
            item["options"] = list(entry.get("options") or [])
        out.append({kind: item})
    return out
