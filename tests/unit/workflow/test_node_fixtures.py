"""Each export in tests/fixtures/dify_nodes imports with load_dsl and runs to the expected result
(offline LLM provider, no services)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from relay.workflow import (
    GraphRunSucceededEvent,
    LLMProviderConfig,
    LLMSettings,
    SystemVariables,
    create_engine,
    create_services,
    load_dsl,
)
from relay.workflow.tools.base import ToolProviders
from relay.workflow.tools.builtin import TimeProvider

from .test_tool_node import FixedClock

FIXTURES = Path(__file__).parents[2] / "fixtures" / "dify_nodes"
IMAGE = {"type": "image", "transfer_method": "remote_url", "url": "http://f/x.png"}
BIG = {**IMAGE, "size": 9, "url": "http://f/y.png"}

CASES: dict[str, tuple[dict[str, Any], str | None, dict[str, Any]]] = {
    "question-classifier": ({}, "my app shows a technical error", {
        "answer": "Tech team: Technical problem"}),
    "parameter-extractor": ({"request": "city: Kyoto, nights: 4, a single room"}, None, {
        "city": "Kyoto", "nights": 4, "room": "single", "ok": 1}),
    "list-operator": ({"files": [{**IMAGE, "size": 5}, BIG,
                                 {"type": "document", "url": "http://f/z.pdf", "size": 99}]}, None,
                      {"biggest": BIG, "count": [BIG]}),
    "document-extractor": ({"docs": [
        {"filename": "a.md", "transfer_method": "local_file", "content": "# A"},
        {"filename": "b.csv", "transfer_method": "local_file",
         "content_base64": base64.b64encode(b"x,y\n1,2\n").decode()},
    ]}, None, {"text": "# A\n---\n| x | y |\n| --- | --- |\n| 1 | 2 |"}),
    "loop": ({"step": "3"}, None, {"total": 12, "rounds": 4}),
    "variable-assigner": ({"lang": "fr"}, None, {"greeting": "Bonjour"}),
    "tool": ({"zone": "Pacific/Auckland"}, None, {"today": "2026-03-01"}),
    "agent-function-calling": ({}, 'Which day? current_time {"timezone": "Asia/Tokyo"}', {
        "answer": "[offline agent reply] current_time: 2026-03-01"}),
    "agent-react": ({}, "Which day is it today?", {
        "answer": "[offline agent reply] current_time: 2026-03-01"}),
}  # fmt: skip


# Exports whose tools call servers: run by the integration test named, against local servers.
SERVER_FIXTURES = {
    "web-tools": "tests/integration/workflow/test_web_tools.py",
    "agent-mcp": "tests/integration/workflow/test_mcp_and_api_tools.py",
}


def test_every_fixture_has_a_case() -> None:
    assert sorted(p.stem for p in FIXTURES.glob("*.yml")) == sorted([*CASES, *SERVER_FIXTURES])
    root = FIXTURES.parents[2]
    for name, test_file in SERVER_FIXTURES.items():
        assert f"{name}.yml" in (root / test_file).read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(CASES))
def test_fixture_imports_and_runs(name: str) -> None:
    inputs, query, expected = CASES[name]
    app = load_dsl((FIXTURES / f"{name}.yml").read_text(encoding="utf-8"))
    services = create_services(
        llm=LLMSettings(default=LLMProviderConfig(kind="offline", token_delay=0)),
        tools=ToolProviders([TimeProvider(FixedClock)]),
    )
    engine = create_engine(
        app, inputs=inputs, system=SystemVariables(query=query), services=services
    )
    events = list(engine.run())
    last = events[-1]
    assert isinstance(last, GraphRunSucceededEvent), last
    assert {k: last.outputs[k] for k in expected} == expected
