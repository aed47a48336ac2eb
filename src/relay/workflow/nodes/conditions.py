"""Dify's comparison operators, as pure functions over pool values."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from relay.workflow.variables import to_text


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _compare_numbers(test: Callable[[float, float], bool]) -> Callable[[Any, Any], bool]:
    def compare(actual: Any, expected: Any) -> bool:
        left, right = _number(actual), _number(expected)
        return left is not None and right is not None and test(left, right)

    return compare


def _is_empty(actual: Any, _: Any) -> bool:
    return actual is None or actual == "" or actual == [] or actual == {}


def _contains(actual: Any, expected: Any) -> bool:
    if isinstance(actual, str):
        return to_text(expected) in actual
    if isinstance(actual, list | tuple):
        return expected in actual or to_text(expected) in [to_text(a) for a in actual]
    return False


def _in(actual: Any, expected: Any) -> bool:
    options = expected if isinstance(expected, list) else [expected]
    return actual in options or to_text(actual) in [to_text(o) for o in options]


def _all_of(actual: Any, expected: Any) -> bool:
    wanted = expected if isinstance(expected, list) else [expected]
    return isinstance(actual, list | tuple) and all(_contains(actual, w) for w in wanted)


def _is(actual: Any, expected: Any) -> bool:
    if actual is None:
        return False
    return to_text(actual) == to_text(expected)


def _starts(actual: Any, expected: Any) -> bool:
    return isinstance(actual, str) and actual.startswith(to_text(expected))


def _ends(actual: Any, expected: Any) -> bool:
    return isinstance(actual, str) and actual.endswith(to_text(expected))


OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "contains": _contains,
    "not contains": lambda a, e: not _contains(a, e),
    "start with": _starts,
    "end with": _ends,
    "is": _is,
    "is not": lambda a, e: not _is(a, e),
    "empty": _is_empty,
    "not empty": lambda a, e: not _is_empty(a, e),
    "in": _in,
    "not in": lambda a, e: not _in(a, e),
    "all of": _all_of,
    "=": _compare_numbers(lambda a, b: a == b),
    "≠": _compare_numbers(lambda a, b: a != b),
    ">": _compare_numbers(lambda a, b: a > b),
    "<": _compare_numbers(lambda a, b: a < b),
    "≥": _compare_numbers(lambda a, b: a >= b),
    "≤": _compare_numbers(lambda a, b: a <= b),
    "null": lambda a, _: a is None,
    "not null": lambda a, _: a is not None,
    "exists": lambda a, _: a is not None,
    "not exists": lambda a, _: a is None,
}
# Spellings older exports use.
OPERATORS.update({"!=": OPERATORS["≠"], ">=": OPERATORS["≥"], "<=": OPERATORS["≤"]})

# Operators that take no comparison value.
UNARY = frozenset({"empty", "not empty", "null", "not null", "exists", "not exists"})


def evaluate(operator: str, actual: Any, expected: Any) -> bool:
    """Apply ``operator``; raises KeyError for an unknown one (validated at import)."""
    return OPERATORS[operator](actual, expected)
