"""Workflow-as-tool through the API and a real worker: a published app calls another published
app of its tenant by name; another tenant's app of that name is never reached."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from relay.config import Settings
from tests.integration.streaming.support import streaming_stack

YAML = {"Content-Type": "application/x-yaml"}


def _app(name: str, nodes: list[dict[str, Any]], edges: list[tuple[str, str]]) -> str:
    return yaml.safe_dump({
        "app": {"name": name, "mode": "workflow"},
        "kind": "app",
        "version": "0.1.5",
        "workflow": {
            "environment_variables": [], "conversation_variables": [], "features": {},
            "graph": {"nodes": nodes, "edges": [
                {"id": f"{s}-{t}", "source": s, "target": t} for s, t in edges]},
        },
    })  # fmt: skip


def _callee(greeting: str) -> str:
    return _app("greeter", [
        {"id": "s", "data": {"type": "start", "title": "Start", "variables": [
            {"variable": "who", "type": "text-input", "required": True}]}},
        {"id": "t", "data": {"type": "template-transform", "title": "T",
                             "template": greeting + ", {{ who }}!", "variables": [
                                 {"variable": "who", "value_selector": ["s", "who"]}]}},
        {"id": "e", "data": {"type": "end", "title": "End", "outputs": [
            {"variable": "text", "value_selector": ["t", "output"]}]}},
    ], [("s", "t"), ("t", "e")])  # fmt: skip


CALLER = _app("caller", [
    {"id": "s", "data": {"type": "start", "title": "Start", "variables": [
        {"variable": "name", "type": "text-input", "required": True}]}},
    {"id": "tool", "data": {"type": "tool", "title": "Greeter", "provider_type": "workflow",
                            "provider_id": "dify-provider-id", "provider_name": "greeter",
                            "tool_name": "greeter", "tool_label": "greeter",
                            "tool_configurations": {}, "tool_parameters": {
                                "who": {"type": "variable", "value": ["s", "name"]}}}},
    {"id": "e", "data": {"type": "end", "title": "End", "outputs": [
        {"variable": "said", "value_selector": ["tool", "text"]}]}},
], [("s", "tool"), ("tool", "e")])  # fmt: skip


def test_a_published_app_calls_another_of_its_tenant(settings: Settings) -> None:
    with streaming_stack(settings) as stack:
        other = stack.api.create_tenant()
        for tenant, source in ((other, _callee("Psst")), (stack.tenant, CALLER)):
            made = stack.api.call("POST", "/v1/apps/import?publish=true", tenant, data=source,
                                  headers=YAML)  # fmt: skip
            assert made.status_code == 201, made.json
        caller_id = made.json["app"]["id"]
        body = {"app_id": caller_id, "user": "u", "response_mode": "blocking",
                "inputs": {"name": "relay"}}  # fmt: skip
        # Only the other tenant has a "greeter" app: the tool finds nothing.
        refused = stack.api.ok("POST", "/v1/workflows/run", stack.tenant, json=body)
        assert refused["data"]["status"] == "failed", refused
        assert "names no published workflow app of this tenant" in refused["data"]["error"]
        own = stack.api.call("POST", "/v1/apps/import?publish=true", stack.tenant,
                             data=_callee("Hello"), headers=YAML)  # fmt: skip
        assert own.status_code == 201, own.json
        run = stack.api.ok("POST", "/v1/workflows/run", stack.tenant, json=body)
    assert run["data"]["status"] == "succeeded", run
    assert run["data"]["outputs"] == {"said": "Hello, relay!"}


NODE_FIXTURES = Path(__file__).parents[2] / "fixtures" / "dify_nodes"


def test_node_type_exports_import_through_the_api_and_a_loop_runs_on_the_worker(
    settings: Settings,
) -> None:
    with streaming_stack(settings) as stack:
        imported = {}
        for path in sorted(NODE_FIXTURES.glob("*.yml")):
            made = stack.api.call("POST", "/v1/apps/import?publish=true", stack.tenant,
                                  data=path.read_text(encoding="utf-8"), headers=YAML)  # fmt: skip
            assert made.status_code == 201, (path.name, made.json)
            imported[path.stem] = made.json["app"]["id"]
        body = {"app_id": imported["loop"], "user": "u", "response_mode": "blocking",
                "inputs": {"step": 4}}  # fmt: skip
        run = stack.api.ok("POST", "/v1/workflows/run", stack.tenant, json=body)
    assert run["data"]["status"] == "succeeded", run
    assert run["data"]["outputs"] == {"total": 12, "rounds": 3}
