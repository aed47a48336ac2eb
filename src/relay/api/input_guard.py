"""Limits every decoded request value must respect before a handler sees it.

JSON that parses is not yet safe to use: a value nested thousands of levels deep overflows the
stack of whatever walks it next (validation, serialisation), a NUL character cannot be stored in
a PostgreSQL text column, a lone surrogate cannot be encoded as UTF-8, and an integer beyond 64
bits or a non-finite float fits no column. Each of these is a 400 with its own code, raised
before anything is read from or written to a store.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from relay.errors import BadRequest

MAX_DEPTH = 64
"""Deepest nesting of arrays and objects a JSON body may have."""
MAX_INT = 2**63 - 1
"""Largest magnitude of an integer in a body (a signed 64-bit column)."""


class BodyTooDeep(BadRequest):
    """The JSON body nests deeper than ``MAX_DEPTH``."""

    code = "body_too_deep"


class NulCharacter(BadRequest):
    """A text value contains the NUL character."""

    code = "nul_character"


class InvalidUnicode(BadRequest):
    """A text value is not valid Unicode (a lone surrogate escape)."""

    code = "invalid_unicode"


class NumberOutOfRange(BadRequest):
    """A number is not finite or does not fit 64 bits."""

    code = "number_out_of_range"


def too_deep() -> BodyTooDeep:
    return BodyTooDeep(
        f"JSON body is nested too deeply (at most {MAX_DEPTH} levels)",
        details={"max_depth": MAX_DEPTH},
    )


def check_text(value: str, where: str) -> None:
    """Raise unless ``value`` is storable text: no NUL, valid UTF-8."""
    if "\x00" in value:
        raise NulCharacter(f"{where} contains a NUL character", details={"field": where})
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidUnicode(
            f"{where} is not valid Unicode (lone surrogate)", details={"field": where}
        ) from None


def check_texts(pairs: Iterable[tuple[str, str]], kind: str) -> None:
    """Check each name and value of a multi-dict (query string, form, path)."""
    for name, value in pairs:
        check_text(name, f"{kind} parameter name")
        check_text(value, f"{kind} parameter {name!r}")


def check_value(value: Any) -> None:
    """Walk a parsed JSON value (iteratively) and raise on the first thing it must not hold."""
    stack: list[tuple[Any, int, str]] = [(value, 0, "body")]
    while stack:
        item, depth, where = stack.pop()
        if isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                raise too_deep()
            if isinstance(item, dict):
                for key, child in item.items():
                    check_text(key, f"a key of {where}")
                    stack.append((child, depth + 1, f"{where}.{key}"[:200]))
            else:
                stack.extend(
                    (child, depth + 1, f"{where}[{i}]"[:200]) for i, child in enumerate(item)
                )
        elif isinstance(item, str):
            check_text(item, where)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if abs(item) > MAX_INT:
                raise NumberOutOfRange(
                    f"{where} is out of range (integers are limited to 64 bits)",
                    details={"field": where},
                )
        elif isinstance(item, float) and not math.isfinite(item):
            raise NumberOutOfRange(f"{where} is not a finite number", details={"field": where})


def guard_request() -> None:
    """``before_request`` of the app: path and query values are storable text."""
    from flask import request

    check_texts(((k, str(v)) for k, v in (request.view_args or {}).items()), "path")
    check_texts(request.args.items(multi=True), "query")
