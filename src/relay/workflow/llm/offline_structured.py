"""Deterministic answers of the offline provider to classification and extraction tasks.

No model runs: a class is chosen by the words it shares with the text, and parameters are read
with plain rules (``name: value`` pairs, numbers, yes/no, listed options). The answers are
the JSON a model is asked for, so the nodes parse them exactly as they parse a model's reply.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from relay.workflow.llm.base import StructuredTask

_WORD = re.compile(r"\w+", re.UNICODE)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_YES = frozenset({"yes", "true", "y", "ok", "sure", "enable", "enabled", "on"})
_NO = frozenset({"no", "false", "n", "disable", "disabled", "off", "not"})


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def _stem(word: str) -> str:
    # Crude plural folding so "refunds" matches "refund" without a language library.
    return word[:-1] if len(word) > 3 and word.endswith("s") else word


def classify(task: StructuredTask) -> dict[str, str]:
    """The class sharing most words with the text (the first class on a tie or no overlap)."""
    text = {_stem(w) for w in _words(task.text)}
    best: Mapping[str, str] | None = None
    best_score = 0
    for item in task.classes:
        score = len(text & {_stem(w) for w in _words(str(item.get("name", "")))})
        if score > best_score:
            best, best_score = item, score
    chosen = best or (task.classes[0] if task.classes else {"id": "", "name": ""})
    return {"category_id": str(chosen.get("id", "")), "category_name": str(chosen.get("name", ""))}


def _labelled(text: str, name: str) -> str | None:
    """The value after ``name:`` or ``name =`` (name matched with spaces or underscores)."""
    spelled = re.escape(name).replace("_", "[ _]")
    found = re.search(rf"\b{spelled}\s*[:=]\s*([^\n,;]+)", text, re.IGNORECASE)
    return found.group(1).strip() if found else None


def _extract_one(text: str, parameter: Mapping[str, Any]) -> Any:
    name = str(parameter.get("name", ""))
    kind = str(parameter.get("type", "string"))
    source = _labelled(text, name)
    scope = source if source is not None else text
    options = [str(o) for o in parameter.get("options") or []]
    if options:
        lowered = scope.lower()
        return next((o for o in options if o.lower() in lowered), None)
    if kind == "number":
        numbers = _NUMBER.findall(scope)
        return (float(numbers[0]) if "." in numbers[0] else int(numbers[0])) if numbers else None
    if kind in ("boolean", "bool"):
        words = set(_words(scope))
        return True if words & _YES else False if words & _NO else None
    if kind == "array[number]":
        return [float(n) if "." in n else int(n) for n in _NUMBER.findall(scope)]
    if kind == "array[string]":
        return [part.strip() for part in re.split(r"[,;\n]", scope) if part.strip()]
    if kind.startswith("array"):
        return []
    return source if source is not None else text.strip() or None


def extract(task: StructuredTask) -> dict[str, Any]:
    """Every parameter that the rules find (missing ones are left out, as a model would)."""
    found: dict[str, Any] = {}
    for parameter in task.parameters:
        value = _extract_one(task.text, parameter)
        if value is not None:
            found[str(parameter.get("name", ""))] = value
    return found


def structured_reply(task: StructuredTask) -> str:
    """The JSON text the offline provider replies with."""
    answer = classify(task) if task.kind == "classify" else extract(task)
    return json.dumps(answer, ensure_ascii=False)
