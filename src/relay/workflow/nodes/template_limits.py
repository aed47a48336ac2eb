"""Jinja2 rendering with limits enforced while the template runs, not after.

Jinja2's sandbox stops templates from reaching Python internals, but not from allocating:
``{{ 'a' * 10**9 }}`` builds a 1 GB string before any length check after rendering sees it.
:class:`BoundedEnvironment` checks, before the work is done:

- operators: ``*`` (repetition), ``**``, ``%`` (formatting) and ``+`` (concatenation) on values
  whose result would pass :data:`MAX_VALUE_LENGTH`; ``~`` is rewritten into a checked join;
- calls and filters: widths and counts (``center``, ``indent``, ``wordwrap``, ``ljust``...),
  ``replace``, ``join``, ``format``/``str.format`` widths, ``list.extend``, and turning a
  container into text (a list holding one big list many times is small in memory and huge as
  text); every produced string or list is checked as well;
- work: every loop iteration, call, filter and operator is a step; a render may take
  :data:`MAX_STEPS` steps and :data:`MAX_SECONDS` seconds (so nested loops end too);
- output: rendered chunk by chunk, stopped as soon as it passes the output limit.

Recursive loops are refused at compile time (their inner iterations escape the step count),
and ``lipsum`` is not offered.
"""

from __future__ import annotations

import contextvars
import re
import string
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import wraps
from itertools import chain
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment
from jinja2.visitor import NodeTransformer

# Dify's TEMPLATE_TRANSFORM_MAX_LENGTH.
MAX_OUTPUT_LENGTH = 400_000
MAX_VALUE_LENGTH = 4_000_000  # characters (or items) of any one value a template builds
MAX_STEPS = 1_000_000
MAX_SECONDS = 5.0
MAX_INT_BITS = 1 << 16

# Filters that never turn their value into text; any other filter may call str() on it.
_STRUCTURAL_FILTERS = frozenset(
    {
        "attr", "batch", "count", "d", "default", "dictsort", "first", "groupby", "items",
        "last", "length", "list", "map", "max", "min", "reject", "rejectattr", "reverse",
        "random", "select", "selectattr", "slice", "sort", "unique",
    }
)  # fmt: skip


class TemplateLimitError(SecurityError):
    """The template hit a rendering limit."""


@dataclass
class _Budget:
    deadline: float
    steps: int = 0


_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "relay_template_budget", default=None
)


def _tick() -> None:
    _charge(1)


def _charge(steps: int) -> None:
    """Count ``steps`` of work against the render's budget (measuring values costs too)."""
    budget = _budget.get()
    if budget is None:  # compile-time constant folding, or a render outside render_bounded
        return
    before = budget.steps
    budget.steps += steps if steps < 8 else steps // 8
    if budget.steps > MAX_STEPS:
        raise TemplateLimitError(
            f"the template took more than {MAX_STEPS} steps (loop iterations, calls, filters)"
        )
    if (before >> 10) != (budget.steps >> 10) and time.monotonic() > budget.deadline:
        raise TemplateLimitError(f"the template took more than {MAX_SECONDS:g}s to render")


def _leaf_size(item: Any) -> int | None:
    """len(str(item)) (at least) of a non-container; None for a container."""
    if isinstance(item, str | bytes | bytearray):
        return len(item)
    if isinstance(item, bool) or item is None:
        return 4
    if isinstance(item, int):
        return item.bit_length() * 3 // 10 + 1
    if isinstance(item, dict | list | tuple | set | frozenset):
        return None
    return 1


def _children(item: Any) -> list[Any]:
    return [*item.keys(), *item.values()] if isinstance(item, dict) else list(item)


def size_of(value: Any, limit: int = MAX_VALUE_LENGTH) -> int:
    """A lower bound of ``len(str(value))`` (exact for strings), capped just past ``limit``.

    Shared items count each time they would be printed (a list holding one big list a thousand
    times is small in memory and huge as text), but are measured once: the walk costs the
    number of references, which is charged to the render's step budget.
    """
    leaf = _leaf_size(value)
    if leaf is not None:
        return leaf
    sizes: dict[int, int] = {}
    open_: set[int] = set()
    stack = [value]
    visits = 0
    while stack:
        item = stack[-1]
        key = id(item)
        if key in sizes:
            stack.pop()
            continue
        children = _children(item)
        visits += len(children) + 1
        if key not in open_:
            open_.add(key)
            pending = [
                child
                for child in children
                if _leaf_size(child) is None and id(child) not in sizes and id(child) not in open_
            ]
            if pending:
                stack.extend(pending)
                continue
        total = 2 + (4 if isinstance(item, dict) else 2) * len(children)
        for child in children:
            leaf = _leaf_size(child)
            total += leaf if leaf is not None else sizes.get(id(child), 0)  # a cycle counts 0
            if total > limit:
                break
        sizes[key] = min(total, limit + 1)
        stack.pop()
    _charge(visits)
    return sizes[id(value)]


def _check(size: int, what: str) -> None:
    if size > MAX_VALUE_LENGTH:
        raise TemplateLimitError(f"{what} would exceed {MAX_VALUE_LENGTH} characters")


def _check_count(value: Any, what: str) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_VALUE_LENGTH:
        raise TemplateLimitError(f"{what}: {value} is larger than {MAX_VALUE_LENGTH}")


def _check_result(value: Any) -> Any:
    if isinstance(value, str | list | tuple | dict):
        _check(size_of(value), "a value the template built")
    return value


_PERCENT = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\d+|\*)?(?:\.(\d+|\*))?")


def _check_percent(fmt: str, args: Any) -> None:
    for match in _PERCENT.finditer(fmt):
        for number in match.groups():
            if number and number.isdigit():
                _check_count(int(number), "a format width")
    for arg in args if isinstance(args, tuple) else (args,):
        _check_count(arg, "a format argument")
    _check(len(fmt) + size_of(args), "formatting")


def _check_format(fmt: str, args: Iterable[Any]) -> None:
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # str.format raises the same error itself
    for _, _, spec, _ in fields:
        if spec and "{" in spec:
            raise TemplateLimitError("nested replacement fields in a format spec")
        for number in re.findall(r"\d+", spec or ""):
            _check_count(int(number), "a format width")
    _check(len(fmt) + size_of(list(args)), "formatting")


def _replaced_size(text: str, old: Any, new: Any) -> int:
    if not isinstance(text, str) or not isinstance(old, str) or not isinstance(new, str):
        return 0
    hits = len(text) + 1 if old == "" else text.count(old)
    return len(text) + hits * max(len(new) - len(old), 0)


def _check_method(obj: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Pre-checks of the builtin methods that can build large values from small ones."""
    owner = getattr(obj, "__self__", None)
    name = getattr(obj, "__name__", "")
    if isinstance(owner, str):
        if name == "join" and args:
            items = args[0] if isinstance(args[0], list | tuple) else list(args[0])
            _check(size_of(items) + len(owner) * len(items), "join")
            return (items, *args[1:])
        if name == "replace" and len(args) >= 2:
            _check(_replaced_size(owner, args[0], args[1]), "replace")
        elif name == "expandtabs" and args:
            _check_count(args[0], "expandtabs")
            _check(len(owner) + owner.count("\t") * int(args[0]), "expandtabs")
    elif isinstance(owner, list) and name in ("extend", "append", "insert"):
        added = len(args[-1]) if name == "extend" and isinstance(args[-1], list | tuple) else 1
        _check(len(owner) + added, f"list.{name}")
    return args


def _filter_check(name: str, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    def arg(position: int, key: str, default: Any) -> Any:
        return args[position] if len(args) > position else kwargs.get(key, default)

    if name not in _STRUCTURAL_FILTERS and isinstance(value, list | tuple | dict | set):
        _check(size_of(value), f"the {name} filter's text")
    if name == "center":
        _check(size_of(value) + int(arg(0, "width", 80)), "center")
    elif name == "indent":
        width = arg(0, "width", 4)
        lines = str(value).count("\n") + 1 if isinstance(value, str) else 1
        _check(
            size_of(value) + lines * (len(width) if isinstance(width, str) else int(width)), name
        )
    elif name == "wordwrap":
        width = max(int(arg(0, "width", 79)), 1)
        wrap = arg(2, "wrapstring", None) or "\n"
        _check(size_of(value) + (size_of(value) // width + 1) * len(str(wrap)), name)
    elif name == "replace":
        _check(_replaced_size(value, arg(0, "old", ""), arg(1, "new", "")), name)
    elif name == "join":
        items = value if isinstance(value, list | tuple) else []
        _check(size_of(items) + len(str(arg(0, "d", ""))) * len(items), name)
    elif name == "format" and isinstance(value, str):
        _check_percent(value, args or kwargs)


def _guard_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    offset = 1 if getattr(fn, "jinja_pass_arg", None) is not None else 0  # context/env first

    @wraps(fn)  # keeps jinja_pass_arg, so Jinja still passes the context or environment
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _tick()
        values = list(args)
        if len(values) > offset:
            if name in ("join", "sum") and not isinstance(values[offset], list | tuple | str):
                values[offset] = list(values[offset])  # measure what a generator yields
            for extra in chain(values[offset + 1 :], kwargs.values()):
                _check_count(extra, f"the {name} filter")
            _filter_check(name, values[offset], tuple(values[offset + 1 :]), kwargs)
        return _check_result(fn(*values, **kwargs))

    return guarded


def _counted(iterable: Iterable[Any]) -> Iterator[Any]:
    for item in iterable:
        _tick()
        yield item


def _concat(values: list[Any]) -> str:
    _tick()
    _check(sum(size_of(v) for v in values), "the ~ operator")
    return "".join(map(str, values))


class _Bounds(NodeTransformer):
    """Counts every loop iteration as a step; turns ``~`` into the checked join."""

    def __init__(self, environment: jinja2.Environment) -> None:
        self.environment = environment

    def _wrap(self, node: nodes.Expr, name: str) -> nodes.Filter:
        wrapped = nodes.Filter(node, name, [], [], None, None, lineno=node.lineno)
        wrapped.set_environment(self.environment)
        return wrapped

    def visit_For(self, node: nodes.For) -> nodes.Node:
        if node.recursive:
            raise jinja2.TemplateSyntaxError("recursive loops are not supported", node.lineno)
        self.generic_visit(node)
        assert isinstance(node.iter, nodes.Expr)
        node.iter = self._wrap(node.iter, "relay_counted")
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        items = [item for item in node.nodes if isinstance(item, nodes.Expr)]
        return self._wrap(nodes.List(items, lineno=node.lineno), "relay_concat")


class BoundedEnvironment(SandboxedEnvironment):
    """A sandbox whose templates cannot allocate or loop without bound (see module doc)."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, **options: Any) -> None:
        super().__init__(finalize=self._finalize, **options)
        self.globals.pop("lipsum", None)
        for name, fn in list(self.filters.items()):
            self.filters[name] = _guard_filter(name, fn)
        self.filters["relay_counted"] = _counted
        self.filters["relay_concat"] = _concat

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        bounded = _Bounds(self).visit(tree)
        assert isinstance(bounded, nodes.Template)
        return bounded

    def _finalize(self, value: Any) -> Any:
        # Printing a value longer than the whole output may be is refused before str() runs.
        if not isinstance(value, str) and size_of(value, MAX_OUTPUT_LENGTH) > MAX_OUTPUT_LENGTH:
            raise TemplateLimitError(
                f"template output is longer than {MAX_OUTPUT_LENGTH} characters"
            )
        return value

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _tick()
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | bytes | list | tuple) and isinstance(times, int):
                    _check(size_of(seq) * max(times, 0), "repeating a value")
        elif operator == "**":
            numbers = isinstance(left, int) and isinstance(right, int) and right > 0
            if numbers and abs(left) > 1 and left.bit_length() * right > MAX_INT_BITS:
                raise TemplateLimitError(f"a power with more than {MAX_INT_BITS} bits")
        elif operator == "%" and isinstance(left, str):
            _check_percent(left, right)
        elif operator == "+" and isinstance(left, str | list | tuple):
            _check(size_of(left) + size_of(right), "concatenation")
        return _check_result(super().call_binop(context, operator, left, right))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _tick()
        for value in chain(args, kwargs.values()):
            _check_count(value, f"an argument of {getattr(__obj, '__name__', 'a call')}")
        args = _check_method(__obj, args)
        return _check_result(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        formatter = super().wrap_str_format(value)
        if formatter is None:
            return None
        fmt = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:
            _check_format(fmt, chain(args, kwargs.values()))
            return formatter(*args, **kwargs)

        return checked


def render_bounded(
    template: jinja2.Template, variables: Mapping[str, Any], max_output: int = MAX_OUTPUT_LENGTH
) -> str:
    """Render within the step, time and output limits; raises jinja2.TemplateError."""
    token = _budget.set(_Budget(time.monotonic() + MAX_SECONDS))
    try:
        parts: list[str] = []
        size = 0
        for chunk in template.generate(**variables):
            size += len(chunk)
            if size > max_output:
                raise TemplateLimitError(f"template output is longer than {max_output} characters")
            parts.append(chunk)
        return "".join(parts)
    finally:
        _budget.reset(token)
