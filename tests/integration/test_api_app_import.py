"""Importing Dify exports as Dify writes them (YAML or JSON), the report, and export back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from relay.config import Settings
from relay.models import App
from tests.integration.test_api_support import Api, TenantCredentials

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dify_dsl"
EXPORTS = sorted(FIXTURES.glob("*.yml"))
YAML = {"Content-Type": "application/x-yaml"}


def _import(
    api: Api, tenant: TenantCredentials, body: bytes | str, query: str = "", **kw: Any
) -> Any:
    headers = kw.pop("headers", YAML)
    return api.call("POST", f"/v1/apps/import{query}", tenant, data=body, headers=headers, **kw)


def test_every_real_export_imports_as_dify_wrote_it(api: Api, tenant: TenantCredentials) -> None:
    assert len(EXPORTS) == 12
    for path in EXPORTS:
        source = path.read_bytes()
        response = _import(api, tenant, source)
        assert response.status_code == 201, (path.name, response.json)
        report = response.json
        document = yaml.safe_load(source)
        app = report["app"]
        assert (app["name"], app["mode"]) == (document["app"]["name"], document["app"]["mode"])
        assert app["draft_workflow"] == document["workflow"]["graph"], path.name
        assert report["published"] is False
        assert app["published_workflow"] is None
        typed = [n for n in document["workflow"]["graph"]["nodes"] if n["data"].get("type")]
        assert report["mapped"]["nodes"] == len(typed)
        assert sum(report["mapped"]["node_types"].values()) == len(typed)
        for item in report["attention"]:
            assert set(item) >= {"code", "node_id", "field", "message"}
    listed = api.ok("GET", "/v1/apps?limit=100", tenant)
    assert listed["total"] == len(EXPORTS)


def test_the_report_names_unknown_datasets_and_plugins(api: Api, tenant: TenantCredentials) -> None:
    source = (FIXTURES / "knowledge-base-chat.yml").read_text()
    report = _import(api, tenant, source).json
    assert report["status"] == "completed-with-warnings"
    unknown = [i for i in report["attention"] if i["code"] == "unknown_dataset"]
    assert [(i["node_id"], i["field"], i["dataset_id"]) for i in unknown] == [
        ("1743994832383", "dataset_ids[0]", "2516f4a8-9329-4845-a914-7965090ee2e2")
    ]
    assert {i["code"] for i in report["attention"]} >= {"plugin_dependency", "llm_provider"}

    # With the tenant's own dataset in the export, nothing is unknown any more.
    dataset = api.ok("POST", "/v1/datasets", tenant, 201, json={"name": "kb"})
    mine = source.replace("2516f4a8-9329-4845-a914-7965090ee2e2", dataset["id"])
    again = _import(api, tenant, mine).json
    assert not [i for i in again["attention"] if i["code"] == "unknown_dataset"]


def test_json_body_and_publish_on_request(api: Api, tenant: TenantCredentials) -> None:
    document = yaml.safe_load((FIXTURES / "seo-slug-generator.yml").read_text())
    response = _import(
        api, tenant, json.dumps(document), "?publish=true&name=Slugs",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert response.status_code == 201, response.json
    app = response.json["app"]
    assert response.json["published"] is True
    assert app["name"] == "Slugs"
    assert app["published_workflow"] == document["workflow"]["graph"]


def test_export_writes_the_same_format_back(api: Api, tenant: TenantCredentials) -> None:
    for name in (path.name for path in EXPORTS):
        first = _import(api, tenant, (FIXTURES / name).read_bytes()).json["app"]
        exported = api.call("GET", f"/v1/apps/{first['id']}/export", tenant)
        assert exported.status_code == 200
        assert exported.mimetype == "application/x-yaml"
        document = yaml.safe_load(exported.data)
        assert document["kind"] == "app"
        assert document["version"]
        assert document["app"]["mode"] == first["mode"]
        original = yaml.safe_load((FIXTURES / name).read_bytes())
        for key in ("features", "environment_variables", "conversation_variables"):
            # Missing in some older exports: written back empty.
            assert document["workflow"][key] == (
                original["workflow"].get(key) or type(document["workflow"][key])()
            ), key
        second = _import(api, tenant, exported.data).json["app"]
        assert second["draft_workflow"] == first["draft_workflow"]
        as_json = api.ok("GET", f"/v1/apps/{first['id']}/export?format=json", tenant)
        assert as_json == document
    other = api.create_tenant("globex")
    assert api.call("GET", f"/v1/apps/{first['id']}/export", other).status_code == 404


def test_chat_app_exports_carry_their_model_config(api: Api, tenant: TenantCredentials) -> None:
    config = {"model": {"provider": "openai", "name": "gpt-4o"}, "pre_prompt": "Be brief."}
    source = yaml.safe_dump(
        {"app": {"name": "Helper", "mode": "chat"}, "kind": "app", "version": "0.1.5",
         "model_config": config}
    )  # fmt: skip
    app = _import(api, tenant, source, headers={"Content-Type": "text/yaml"}).json["app"]
    assert (app["mode"], app["model_config"]) == ("chat", config)
    exported = api.ok("GET", f"/v1/apps/{app['id']}/export?format=json", tenant)
    assert exported["model_config"] == config
    assert "workflow" not in exported


def test_bad_exports_get_clear_400s_and_create_nothing(api: Api, tenant: TenantCredentials) -> None:
    bad_yaml = _import(api, tenant, "app:\n  name: [unclosed\n")
    assert (bad_yaml.status_code, bad_yaml.json["code"]) == (400, "invalid_dsl")
    assert "line" in bad_yaml.json["message"]

    graph_only = _import(api, tenant, '{"graph": {"nodes": [], "edges": []}}',
                         headers={"Content-Type": "application/json"})  # fmt: skip
    assert graph_only.status_code == 400
    assert "'app'" in graph_only.json["message"]

    form = _import(api, tenant, "x", headers={"Content-Type": "multipart/form-data"})
    assert form.status_code == 400
    assert "application/x-yaml" in form.json["message"]

    document = yaml.safe_load((FIXTURES / "seo-slug-generator.yml").read_text())
    document["workflow"]["graph"]["nodes"] += [
        {"id": "search", "data": {"type": "datasource", "title": "Search"}},
        {"id": "google", "data": {"type": "tool", "title": "Google", "provider_id": "google",
                                  "provider_type": "builtin", "tool_name": "google_search"}},
    ]  # fmt: skip
    start = next(n["id"] for n in document["workflow"]["graph"]["nodes"]
                 if n["data"]["type"] == "start")  # fmt: skip
    document["workflow"]["graph"]["edges"] += [
        {"id": "to-search", "source": start, "target": "search"},
        {"id": "to-google", "source": start, "target": "google"},
    ]
    refused = _import(api, tenant, yaml.safe_dump(document, allow_unicode=True))
    assert (refused.status_code, refused.json["code"]) == (400, "invalid_dsl")
    codes = {(i["code"], i["node_id"]) for i in refused.json["details"]["attention"]}
    assert {("unsupported_node_type", "search"), ("missing_tool_credentials", "google")} <= codes
    google = next(i for i in refused.json["details"]["attention"] if i["node_id"] == "google")
    assert "tool provider 'google' (builtin) is not installed in relay" in google["message"]
    assert api.rows(App) == []


def test_an_imported_app_runs_with_its_environment_variables(settings: Settings) -> None:
    from tests.integration.streaming.support import streaming_stack

    document = {
        "app": {"name": "Greeter", "mode": "workflow"},
        "kind": "app",
        "version": "0.1.5",
        "workflow": {
            "environment_variables": [
                {"name": "greeting", "value": "Hello", "value_type": "string", "id": "e1"}
            ],
            "conversation_variables": [],
            "features": {},
            "graph": {
                "nodes": [
                    {"id": "start", "data": {"type": "start", "title": "Start", "variables": [
                        {"variable": "name", "type": "text-input", "required": True}]}},
                    {"id": "say", "data": {"type": "template-transform", "title": "Say",
                     "template": "{{ g }}, {{ n }}!", "variables": [
                         {"variable": "g", "value_selector": ["env", "greeting"]},
                         {"variable": "n", "value_selector": ["start", "name"]}]}},
                    {"id": "end", "data": {"type": "end", "title": "End", "outputs": [
                        {"variable": "text", "value_selector": ["say", "output"]}]}},
                ],
                "edges": [
                    {"id": "a", "source": "start", "target": "say"},
                    {"id": "b", "source": "say", "target": "end"},
                ],
            },
        },
    }  # fmt: skip
    with streaming_stack(settings) as stack:
        imported = stack.api.call(
            "POST", "/v1/apps/import?publish=true", stack.tenant, data=yaml.safe_dump(document),
            headers=YAML,
        )  # fmt: skip
        assert imported.status_code == 201, imported.json
        body = {"app_id": imported.json["app"]["id"], "user": "u", "response_mode": "blocking",
                "inputs": {"name": "relay"}}  # fmt: skip
        run = stack.api.ok("POST", "/v1/workflows/run", stack.tenant, json=body)
    assert run["data"]["status"] == "succeeded", run
    assert run["data"]["outputs"] == {"text": "Hello, relay!"}
