"""App API keys (issued, listed, revoked; hashed; one app each) and Dify's error bodies, app
description endpoints and the endpoints relay refuses, through ``/dify/v1`` (no worker needed)."""

from __future__ import annotations

import hashlib
import io
from typing import Any

from click.testing import CliRunner

from relay.app_factory import create_app
from relay.cli import main
from relay.config import Settings
from relay.models import AppApiKey, Base
from relay.services.app_keys import AppKeyService
from relay.services.app_service import AppService
from relay.services.tenant_service import TenantService
from tests.conftest import migrated_external_db_in_use
from tests.integration.dify_api.support import Dify
from tests.integration.streaming.support import chat_graph, workflow_graph
from tests.integration.test_api_support import ADMIN, Api, TenantCredentials


def _published(api: Api, tenant: TenantCredentials, graph: dict[str, Any], mode: str) -> str:
    app_id = api.ok("POST", "/v1/apps", tenant, 201, json={"name": "Owl app", "mode": mode})["id"]
    api.ok("PUT", f"/v1/apps/{app_id}/workflows/draft", tenant, json={"graph": graph})
    api.ok("POST", f"/v1/apps/{app_id}/workflows/publish", tenant)
    return str(app_id)


def _key(api: Api, tenant: TenantCredentials, app_id: str) -> str:
    return str(api.ok("POST", f"/v1/apps/{app_id}/api-keys", tenant, 201, json={})["key"])


def test_app_keys_are_hashed_listed_revoked_and_reach_only_their_app(
    api: Api, tenant: TenantCredentials
) -> None:
    flow = _published(api, tenant, workflow_graph(), "workflow")
    chat = _published(api, tenant, chat_graph(), "advanced-chat")
    issued = api.ok("POST", f"/v1/apps/{flow}/api-keys", tenant, 201, json={"name": "sdk"})
    key = issued["key"]
    assert key.startswith("app-")
    assert issued["key_prefix"] == key[:10]
    (row,) = api.rows(AppApiKey, id=issued["id"])
    assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in (row.key_prefix, row.name)
    listed = api.ok("GET", f"/v1/apps/{flow}/api-keys", tenant)
    assert [k["id"] for k in listed["data"]] == [issued["id"]]
    assert "key" not in listed["data"][0]

    dify = Dify(api, key)
    assert dify.ok("GET", "/info")["mode"] == "workflow"
    # Another tenant cannot issue keys for this app; the app's key cannot act on another app.
    other = api.create_tenant("other")
    api.ok("POST", f"/v1/apps/{flow}/api-keys", other, 404, json={})
    chat_dify = Dify(api, _key(api, tenant, chat))
    started = chat_dify.call(
        "POST", "/chat-messages",
        json={"query": "hi", "user": "u", "inputs": {}, "response_mode": "streaming"},
        buffered=False,
    )  # fmt: skip
    # No worker here: the stream answers at once with a ping while the run waits.
    assert next(iter(started.response)) == b"event: ping\n\n"
    started.close()
    runs = api.ok("GET", "/v1/workflows/runs", tenant)["data"]
    chat_run = runs[0]["id"]
    dify.error("GET", f"/workflows/run/{chat_run}", 404, "not_found")
    dify.error("POST", f"/workflows/tasks/{chat_run}/stop", 404, "not_found", json={"user": "u"})

    # The operator's admin API issues, lists and revokes too.
    admin_path = f"/v1/tenants/{tenant.id}/apps/{flow}/api-keys"
    second = api.client.post(admin_path, json={"name": "ops"}, headers=ADMIN)
    assert second.status_code == 201
    assert api.client.get(admin_path, headers=ADMIN).json["total"] == 2
    assert api.client.get(admin_path, headers=tenant.headers).status_code == 401
    revoked = api.client.delete(f"{admin_path}/{second.json['id']}", headers=ADMIN)
    assert revoked.status_code == 204
    Dify(api, second.json["key"]).error("GET", "/info", 401, "unauthorized")

    api.call("DELETE", f"/v1/apps/{flow}/api-keys/{issued['id']}", tenant)
    dify.error("GET", "/info", 401, "unauthorized")
    Dify(api, tenant.key).error("GET", "/info", 401, "unauthorized")
    response = api.client.get("/dify/v1/info")
    assert response.status_code == 401
    assert response.json["code"] == "unauthorized"


def test_errors_answer_in_dify_shape(api: Api, tenant: TenantCredentials) -> None:
    flow = _published(api, tenant, workflow_graph(), "workflow")
    chat = _published(api, tenant, chat_graph(), "advanced-chat")
    draft = api.ok("POST", "/v1/apps", tenant, 201, json={"name": "draft", "mode": "workflow"})
    flow_dify, chat_dify = Dify(api, _key(api, tenant, flow)), Dify(api, _key(api, tenant, chat))
    run = {"inputs": {"topic": "x"}, "user": "u", "response_mode": "blocking"}

    assert "user" in flow_dify.error("POST", "/workflows/run", 400, "invalid_param", json={})
    flow_dify.error(
        "POST", "/workflows/run", 400, "invalid_param", json={**run, "response_mode": "fast"}
    )
    flow_dify.error("POST", "/chat-messages", 400, "not_chat_app", json={**run, "query": "q"})
    chat_dify.error("POST", "/workflows/run", 400, "not_workflow_app", json=run)
    flow_dify.error("POST", "/completion-messages", 400, "not_completion_app", json=run)
    flow_dify.error(
        "POST", "/completion-messages/t/stop", 400, "not_completion_app", json={"user": "u"}
    )
    Dify(api, _key(api, tenant, draft["id"])).error(
        "POST", "/workflows/run", 400, "app_unavailable", json=run
    )
    flow_dify.error("GET", "/workflows/run/nope", 404, "not_found")
    chat_dify.error(
        "POST", "/chat-messages", 404, "not_found",
        json={"query": "q", "user": "u", "conversation_id": "nope"},
    )  # fmt: skip
    chat_dify.error("GET", "/messages?user=u", 400, "invalid_param")
    chat_dify.error("GET", "/messages/nope/suggested?user=u", 404, "not_found")
    chat_dify.error("POST", "/conversations/nope/name", 404, "not_found", json={"user": "u"})
    chat_dify.error("GET", "/conversations/nope/variables?user=u", 404, "not_found")
    chat_dify.error("GET", "/conversations?user=u&limit=500", 400, "invalid_param")
    flow_dify.error(
        "POST", "/workflows/run", 400, "invalid_param",
        json={**run, "inputs": {"topic": {"transfer_method": "local_file", "upload_file_id": "x"}}},
    )  # fmt: skip
    flow_dify.error(
        "POST", "/workflows/run", 400, "invalid_param",
        json={**run, "files": [{"type": "image", "transfer_method": "remote_url", "url": "x"}]},
    )  # fmt: skip

    upload = "/files/upload"
    flow_dify.error("POST", upload, 400, "no_file_uploaded", data={"user": "u"})
    two = {"user": "u", "file": [(io.BytesIO(b"a"), "a.txt"), (io.BytesIO(b"b"), "b.txt")]}
    flow_dify.error("POST", upload, 400, "too_many_files", data=two)
    message = flow_dify.error("POST", "/audio-to-text", 400, "provider_not_support_speech_to_text")
    assert "not supported" in message
    message = flow_dify.error(
        "POST", "/text-to-audio", 400, "provider_not_support_text_to_speech", json={"text": "hi"}
    )
    assert "not supported" in message
    # A stop for a run that is not there, and a path Dify does not have.
    chat_dify.error("GET", "/no-such-endpoint", 404, "not_found")
    chat_dify.error("POST", "/chat-messages/nope/stop", 404, "not_found", json={"user": "u"})


def test_runs_over_the_rate_get_dify_429(settings: Settings) -> None:
    tight = settings.model_copy(
        update={
            "scheduling": settings.scheduling.model_copy(
                update={"rate_burst": {"sandbox": 1}, "rate_per_second": {"sandbox": 0.01}}
            )
        }
    )
    app = create_app(tight)
    runtime = app.extensions["relay"]
    try:
        if not migrated_external_db_in_use(tight):
            Base.metadata.create_all(runtime.db.engine)
        tenant = TenantService(runtime).create("limited", "sandbox")
        apps = AppService(runtime)
        app_id = apps.create(tenant.id, name="flow", mode="workflow").id
        apps.sync_draft_workflow(tenant.id, app_id, workflow_graph())
        apps.publish_workflow(tenant.id, app_id)
        key = AppKeyService(runtime).issue(tenant.id, app_id).key
        dify = Dify(Api(app), key)
        body = {"inputs": {"topic": "x"}, "user": "u", "response_mode": "streaming"}
        first = dify.call("POST", "/workflows/run", json=body, buffered=False)
        assert first.status_code == 200
        first.close()
        dify.error("POST", "/workflows/run", 429, "rate_limit_error", json=body)
        assert dify.call("POST", "/workflows/run", json=body).headers["Retry-After"]
    finally:
        runtime.close()


def test_parameters_info_and_meta_describe_the_app(api: Api, tenant: TenantCredentials) -> None:
    graph = workflow_graph()
    graph["nodes"][0]["data"]["variables"] = [
        {"variable": "topic", "label": "Topic", "type": "text-input", "required": True,
         "max_length": 48},
        {"variable": "tone", "label": "Tone", "type": "select", "options": ["dry", "warm"]},
    ]  # fmt: skip
    flow = _published(api, tenant, graph, "workflow")
    dify = Dify(api, _key(api, tenant, flow))
    params = dify.ok("GET", "/parameters")
    assert params["user_input_form"] == [
        {"text-input": {"label": "Topic", "variable": "topic", "required": True, "default": "",
                        "max_length": 48}},
        {"select": {"label": "Tone", "variable": "tone", "required": False, "default": "",
                    "options": ["dry", "warm"]}},
    ]  # fmt: skip
    for feature in ("suggested_questions_after_answer", "speech_to_text", "text_to_speech"):
        assert params[feature] == {"enabled": False}
    assert params["system_parameters"]["file_size_limit"] == 15
    assert dify.ok("GET", "/info") == {
        "name": "Owl app", "description": "", "tags": [], "mode": "workflow", "author_name": "",
    }  # fmt: skip
    assert dify.ok("GET", "/meta") == {"tool_icons": {}}


def test_the_cli_creates_lists_and_revokes_app_keys(settings: Settings, runtime: Any) -> None:
    tenant = TenantService(runtime).create("acme", "team").id
    app_id = AppService(runtime).create(tenant, name="flow", mode="workflow").id
    env = {
        "RELAY_DATABASE_URL": settings.database_url,
        "RELAY_REDIS_URL": settings.redis.url or "",
        "RELAY_VAR_DIR": str(settings.var_dir),
        "RELAY_LOG_JSON_FORMAT": "false",
        "RELAY_LOG_LEVEL": "WARNING",
    }

    def cli(*args: str) -> Any:
        result = CliRunner().invoke(main, ["apps", "keys", *args, "--tenant", tenant], env=env)
        assert result.exit_code == 0, result.output
        return result

    key = cli("create", app_id, "--name", "sdk").stdout.strip()
    assert key.startswith("app-")
    assert AppKeyService(runtime).authenticate(key).app_id == app_id
    listed = cli("list", app_id).stdout
    assert key[:10] in listed
    assert key not in listed
    key_id = AppKeyService(runtime).authenticate(key).api_key_id
    cli("revoke", app_id, key_id)
    assert AppKeyService(runtime).list_keys(tenant, app_id, _page()).data[0].revoked_at


def _page() -> Any:
    from relay.services.pagination import PageParams

    return PageParams()
