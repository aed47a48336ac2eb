"""template-transform renders with limits enforced while it runs: no unbounded allocation or
work, whatever the template does; ordinary templates render as before."""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest

from relay.workflow import GraphRunFailedEvent, GraphRunSucceededEvent
from relay.workflow.errors import GraphValidationError, NodeError
from relay.workflow.nodes.template_limits import MAX_VALUE_LENGTH, size_of
from relay.workflow.nodes.template_transform import render_template
from tests.unit.workflow.helpers import build, edge, end, make_engine, run_all, start, template

# Well below what any of the refused templates would allocate if it ran (>= 1 GB mostly).
MEMORY_CEILING = 64 * 1024 * 1024


def _run(text: str, **inputs: Any) -> Any:
    graph = build(
        [
            start(*inputs),
            template("t", text, **{name: ["start", name] for name in inputs}),
            end(o=["t", "output"]),
        ],
        [edge("start", "t"), edge("t", "end")],
    )
    return run_all(make_engine(graph, inputs))[-1]


def _refused(text: str, **inputs: Any) -> str:
    """Render and expect a refusal, measuring the peak memory the attempt allocated."""
    tracemalloc.start()
    try:
        with pytest.raises(NodeError) as refused:
            render_template(text, inputs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_CEILING, (text, peak)
    return str(refused.value)


def test_the_gigabyte_template_is_refused_before_it_allocates() -> None:
    final = _run("{{ 'a' * 10**9 }}")
    assert final == GraphRunFailedEvent(
        error=f"template error: repeating a value would exceed {MAX_VALUE_LENGTH} characters",
        exceptions_count=0,
    )
    assert "repeating a value" in _refused("{{ 'a' * 10**9 }}")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        # huge ranges
        ("{{ range(10**9) }}", "is larger than"),
        ("{% for i in range(10**9) %}{% endfor %}", "is larger than"),
        ("{{ (range(1000)|list) * 1000000 }}", "repeating a value"),
        # string multiplication, and filters that multiply strings
        ("{{ x * 1000000000 }}", "repeating a value"),
        ("{{ 1000000000 * x }}", "repeating a value"),
        ("{{ x|center(1000000000) }}", "center filter"),
        ("{{ (x * 1000)|replace('', 'y' * 5000) }}", "replace would exceed"),
        ("{{ ((x ~ '\n') * 100000)|indent('z' * 1000) }}", "indent would exceed"),
        ("{{ ((x ~ ' ') * 10000)|wordwrap(1, wrapstring='w' * 10000) }}", "wordwrap would"),
        ("{{ ([x * 10000] * 30)|join('j' * 200000) }}", "join would exceed"),
        ("{{ ('%' ~ '999999999s')|format(x) }}", "a format width"),
        ("{{ '%999999999s' % x }}", "a format width"),
        ("{{ '%*s' % (999999999, x) }}", "a format argument"),
        ("{{ '{:999999999}'.format(x) }}", "a format width"),
        ("{{ '{0:{1}}'.format(x, '999999999') }}", "nested replacement fields"),
        ("{{ x.ljust(999999999) }}", "is larger than"),
        ("{{ ('j' * 100000).join([x * 10000] * 50) }}", "join would exceed"),
        ("{{ 10 ** 100000000 }}", "a power with more than"),
        # doubling: a value that grows exponentially through a loop
        (
            "{% set ns = namespace(s=x) %}{% for i in range(64) %}"
            "{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
            "the ~ operator would exceed",
        ),
        (
            "{% set ns = namespace(s=x) %}{% for i in range(64) %}"
            "{% set ns.s = ns.s + ns.s %}{% endfor %}",
            "concatenation would exceed",
        ),
        (
            "{% set l = [x] %}{% for i in range(64) %}{% set _ = l.extend(l) %}{% endfor %}",
            "list.extend would exceed",
        ),
        # shared references: small in memory, huge as text
        ("{{ [[[0] * 1000] * 1000] * 1000 }}", "repeating a value"),
        (
            "{% set ns = namespace(l=[x]) %}{% for i in range(64) %}"
            "{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l }}",
            "template output is longer than",
        ),
        (
            "{% set ns = namespace(l=[x]) %}{% for i in range(64) %}"
            "{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l|upper|length }}",
            "the upper filter's text would exceed",
        ),
        # nested loops: bounded work even when nothing is printed
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            "the template took more than",  # its steps, or its seconds when slowed
        ),
        (
            "{% for a in x * 1000 %}{% for b in x * 1000 %}{% for c in x * 1000 %}"
            "{% endfor %}{% endfor %}{% endfor %}",
            "the template took more than",  # its steps, or its seconds when slowed
        ),
        (
            "{% macro f(n) %}{% for i in range(10) %}{{ f(n + 1) }}{% endfor %}{% endmacro %}"
            "{{ f(0) }}",
            "",  # steps or Python's recursion limit, whichever comes first
        ),
        # output
        ("{% for i in range(100000) %}{{ x * 100 }}{% endfor %}", "template output is longer"),
    ],
)
def test_unbounded_templates_are_refused(text: str, reason: str) -> None:
    assert reason in _refused(text, x="ab")


def test_recursive_loops_are_refused_when_the_graph_is_built() -> None:
    with pytest.raises(GraphValidationError, match="recursive loops are not supported"):
        _run("{% for i in x recursive %}{{ loop(i) }}{% endfor %}", x="ab")


@pytest.mark.parametrize(
    ("text", "inputs", "output"),
    [
        ("{{ x }}-{{ x|length }}", {"x": "abc"}, "abc-3"),
        ("{{ x ~ '!' }} {{ x * 3 }} {{ x + x }}", {"x": "ab"}, "ab! ababab abab"),
        ("{% for i in range(3) %}{{ loop.index }}/{{ loop.length }} {% endfor %}", {},
         "1/3 2/3 3/3 "),
        ("{{ '%5s|%-4d|' % ('ab', 7) }}{{ '{:>4}'.format('x') }}", {}, "   ab|7   |   x"),
        ("{{ [1, 2] * 2 }} {{ (x|list)|join(',') }}", {"x": "abc"}, "[1, 2, 1, 2] a,b,c"),
        ("{{ x|center(7) }}|{{ x|replace('b', 'BB') }}", {"x": "abc"}, "  abc  |aBBc"),
        ("{{ x|tojson }} {{ 2 ** 10 }}", {"x": "q"}, '"q" 1024'),
        ("{% set ns = namespace(n=0) %}{% for i in range(10) %}{% set ns.n = ns.n + i %}"
         "{% endfor %}{{ ns.n }}", {}, "45"),
    ],
)  # fmt: skip
def test_ordinary_templates_render(text: str, inputs: dict[str, Any], output: str) -> None:
    assert _run(text, **inputs) == GraphRunSucceededEvent(outputs={"o": output})


def test_size_of_counts_shared_items_each_time_they_print() -> None:
    inner = ["x" * 10] * 10
    value = [inner] * 10
    assert len(str(value)) >= size_of(value) >= 10 * 10 * 10
    assert size_of("abc") == 3
    cycle: list[Any] = []
    cycle.append(cycle)
    assert size_of(cycle) < 10  # a cycle prints as [[...]]
