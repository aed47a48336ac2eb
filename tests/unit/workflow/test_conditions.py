"""Dify's comparison operators."""

from __future__ import annotations

from typing import Any

import pytest

from relay.workflow.nodes.conditions import evaluate


@pytest.mark.parametrize(
    ("operator", "actual", "expected", "result"),
    [
        ("contains", "hello world", "world", True),
        ("contains", ["a", "b"], "b", True),
        ("not contains", "hello", "x", True),
        ("start with", "hello", "he", True),
        ("end with", "hello", "lo", True),
        ("end with", None, "lo", False),
        ("is", "yes", "yes", True),
        ("is", 1, "1", True),
        ("is not", "yes", "no", True),
        ("empty", "", None, True),
        ("empty", None, None, True),
        ("empty", [], None, True),
        ("not empty", "x", None, True),
        ("=", 1, "1", True),
        ("=", "1.0", "1", True),
        ("=", None, "1", False),
        ("≠", 2, "1", True),
        (">", 3, "2", True),
        ("<", 1, "2", True),
        ("≥", 2, "2", True),
        ("≤", 3, "2", False),
        ("null", None, None, True),
        ("not null", 0, None, True),
        ("in", "b", ["a", "b"], True),
        ("not in", "c", ["a", "b"], True),
        ("all of", ["a", "b", "c"], ["a", "c"], True),
        (">", "abc", "1", False),
    ],
)
def test_operator(operator: str, actual: Any, expected: Any, result: bool) -> None:
    assert evaluate(operator, actual, expected) is result
