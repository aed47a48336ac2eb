"""Completion and basic chat apps through ``/dify/v1``: their model config runs as a graph.

``POST /completion-messages`` (blocking, streaming, stop) and ``POST /chat-messages`` for a
``chat`` app, with Dify's event sequence for apps without a workflow (``message`` chunks, then
``message_end``; no workflow or node events), the messages recorded for ``/messages`` and
feedback, the conversation's memory reaching the model, and ``/parameters`` read from the config.
"""

from __future__ import annotations

from typing import Any

from relay.config import Settings
from relay.models import Message, WorkflowNodeExecution, WorkflowRun
from tests.integration.dify_api.support import Dify, app_key, dify_stack, names, parse_stream
from tests.integration.streaming.support import Stack

MODEL = {"provider": "openai", "name": "gpt-4o-mini", "mode": "chat", "completion_params": {}}
COMPLETION_CONFIG = {
    "model": MODEL,
    "pre_prompt": "Write a haiku about {{topic}} in {{lang}}.",
    "user_input_form": [
        {"text-input": {"label": "Topic", "variable": "topic", "required": True}},
        {"select": {"label": "Language", "variable": "lang", "options": ["English", "French"],
                    "default": "French"}},
    ],
    "more_like_this": {"enabled": True},
}  # fmt: skip
CHAT_CONFIG = {
    "model": MODEL,
    "pre_prompt": "You are a terse librarian.",
    "opening_statement": "Ask me about books.",
    "suggested_questions": ["What should I read?"],
    "suggested_questions_after_answer": {"enabled": True},
}
WORKFLOW_EVENTS = {"workflow_started", "node_started", "node_finished", "workflow_finished"}


def _app(stack: Stack, mode: str, config: dict[str, Any]) -> str:
    body = {"name": mode, "mode": mode, "model_config": config}
    return str(stack.api.ok("POST", "/v1/apps", stack.tenant, 201, json=body)["id"])


def test_a_completion_app_answers_blocking_and_streaming(settings: Settings) -> None:
    with dify_stack(settings) as stack:
        app_id = _app(stack, "completion", COMPLETION_CONFIG)
        dify = Dify(stack.api, app_key(stack, app_id))

        blocking = dify.ok(
            "POST", "/completion-messages",
            json={"inputs": {"topic": "owls"}, "user": "ann", "response_mode": "blocking"},
        )  # fmt: skip
        assert blocking["event"] == "message"
        assert blocking["mode"] == "completion"
        assert blocking["id"] == blocking["message_id"]
        assert blocking["task_id"]
        assert isinstance(blocking["created_at"], int)
        # The offline model echoes the prompt: the form's values (and the select's default)
        # reached the llm through the start node's selectors.
        assert "Write a haiku about owls in French." in blocking["answer"]
        usage = blocking["metadata"]["usage"]
        assert usage["prompt_tokens"] > 0
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

        events = dify.stream(
            "/completion-messages", {"inputs": {"topic": "rain", "lang": "English"}, "user": "ann"}
        )
        assert not WORKFLOW_EVENTS & set(names(events))
        assert names(events)[-1] == "message_end"
        assert set(names(events)) == {"message", "message_end"}
        message_id = events[-1]["message_id"]
        for event in events:
            assert event["message_id"] == message_id
            assert event["task_id"] == events[0]["task_id"]
            assert "conversation_id" not in event  # a completion names no conversation
        chunk = events[0]
        assert {"event", "id", "task_id", "message_id", "answer", "created_at"} <= set(chunk)
        answer = "".join(e["answer"] for e in events if e["event"] == "message")
        assert "Write a haiku about rain in English." in answer
        assert events[-1]["metadata"]["usage"]["total_tokens"] > 0

        # Both were recorded as messages: feedback works on them.
        rows = stack.api.rows(Message, app_id=app_id)
        assert {r.id for r in rows} == {blocking["id"], message_id}
        assert {r.answer for r in rows} == {blocking["answer"], answer}
        dify.ok("POST", f"/messages/{message_id}/feedbacks", json={"rating": "like", "user": "ann"})

        # The form and features come from the model config.
        parameters = dify.ok("GET", "/parameters")
        assert parameters["user_input_form"][0]["text-input"]["variable"] == "topic"
        assert parameters["user_input_form"][1]["select"]["default"] == "French"
        assert parameters["more_like_this"] == {"enabled": True}
        assert dify.ok("GET", "/info")["mode"] == "completion"

        # A required input missing: Dify's 400 naming it, and no run.
        runs = len(stack.api.rows(WorkflowRun, app_id=app_id))
        message = dify.error(
            "POST", "/completion-messages", 400, "invalid_param",
            json={"inputs": {}, "user": "ann", "response_mode": "blocking"},
        )  # fmt: skip
        assert "topic" in message
        assert len(stack.api.rows(WorkflowRun, app_id=app_id)) == runs
        # A completion app is no chat app.
        dify.error(
            "POST", "/chat-messages", 400, "not_chat_app",
            json={"query": "q", "inputs": {}, "user": "ann"},
        )  # fmt: skip


def test_a_streamed_completion_stops_by_task_id(settings: Settings) -> None:
    with dify_stack(settings, token_delay=0.02, reply="word " * 300) as stack:
        app_id = _app(stack, "completion", COMPLETION_CONFIG)
        dify = Dify(stack.api, app_key(stack, app_id))
        body = {"inputs": {"topic": "x"}, "user": "u", "response_mode": "streaming"}
        response = dify.call("POST", "/completion-messages", json=body, buffered=False)
        assert response.status_code == 200
        seen: list[dict[str, Any]] = []
        text = ""
        chunks = response.response
        for piece in chunks:
            text += piece.decode()
            blocks, _, text = text.rpartition("\n\n")
            seen += parse_stream(blocks + "\n\n") if blocks else []
            message = next((e for e in seen if e["event"] == "message"), None)
            if message is not None:
                stop = f"/completion-messages/{message['task_id']}/stop"
                assert dify.ok("POST", stop, json={"user": "u"}) == {"result": "success"}
                break
        for piece in chunks:
            text += piece.decode()
        seen += parse_stream(text) if text.strip() else []
        response.close()
        seen = [e for e in seen if e["event"] != "ping"]
        assert seen[-1]["event"] == "message_end"
        streamed = "".join(e["answer"] for e in seen if e["event"] == "message")
        assert len(streamed.split()) < 300, "the stop cut the answer short"
        (run,) = stack.api.rows(WorkflowRun, app_id=app_id)
        assert run.status == "stopped"
        # Only the user who started it may stop it; other apps' stop routes refuse it.
        dify.error("POST", "/completion-messages/nope/stop", 404, "not_found", json={"user": "u"})
        dify.error("POST", f"/chat-messages/{run.id}/stop", 400, "not_chat_app", json={"user": "u"})


def test_a_basic_chat_app_remembers_the_conversation(settings: Settings) -> None:
    with dify_stack(settings) as stack:
        app_id = _app(stack, "chat", CHAT_CONFIG)
        dify = Dify(stack.api, app_key(stack, app_id))

        first = dify.stream(
            "/chat-messages", {"query": "My name is Zebulon.", "inputs": {}, "user": "bo"}
        )
        assert set(names(first)) == {"message", "message_end"}
        assert names(first)[-1] == "message_end"
        conversation_id = first[-1]["conversation_id"]
        for event in first:
            assert event["conversation_id"] == conversation_id
            assert event["message_id"] == first[-1]["message_id"]
        first_answer = "".join(e["answer"] for e in first if e["event"] == "message")
        assert "My name is Zebulon." in first_answer

        second = dify.ok(
            "POST", "/chat-messages",
            json={"query": "What is my name?", "inputs": {}, "user": "bo",
                  "conversation_id": conversation_id, "response_mode": "blocking"},
        )  # fmt: skip
        assert second["mode"] == "chat"
        assert second["conversation_id"] == conversation_id
        assert "What is my name?" in second["answer"]
        # Memory reached the model: the second run's llm got the system prompt, the first turn
        # (query and answer), then the new query.
        run = stack.api.rows(WorkflowRun, id=second["task_id"])[0]
        llm = _llm_inputs(stack, run.id)
        assert [m["role"] for m in llm] == ["system", "user", "assistant", "user"]
        assert llm[0]["text"] == "You are a terse librarian."
        assert (llm[1]["text"], llm[2]["text"]) == ("My name is Zebulon.", first_answer)
        assert llm[3]["text"] == "What is my name?"

        # Recorded like advanced-chat's messages: /messages, /conversations, feedback work.
        history = dify.ok("GET", f"/messages?conversation_id={conversation_id}&user=bo")
        assert [m["query"] for m in history["data"]] == ["My name is Zebulon.", "What is my name?"]
        listed = dify.ok("GET", "/conversations?user=bo")
        assert [c["id"] for c in listed["data"]] == [conversation_id]
        dify.ok(
            "POST", f"/messages/{second['message_id']}/feedbacks",
            json={"rating": "dislike", "user": "bo"},
        )  # fmt: skip
        suggested = dify.ok("GET", f"/messages/{second['message_id']}/suggested?user=bo")
        assert suggested["result"] == "success"

        parameters = dify.ok("GET", "/parameters")
        assert parameters["opening_statement"] == "Ask me about books."
        assert parameters["suggested_questions"] == ["What should I read?"]
        assert parameters["suggested_questions_after_answer"] == {"enabled": True}
        dify.error(
            "POST", "/completion-messages", 400, "not_completion_app",
            json={"inputs": {}, "user": "bo"},
        )  # fmt: skip

        # relay's own API takes messages for the same app.
        own = stack.api.ok(
            "POST", "/v1/chat-messages", stack.tenant,
            json={"app_id": app_id, "query": "Hello?", "inputs": {}, "user": "bo",
                  "response_mode": "blocking"},
        )  # fmt: skip
        assert "Hello?" in own["answer"]


def test_a_model_config_that_cannot_run_is_refused_naming_its_field(settings: Settings) -> None:
    with dify_stack(settings) as stack:
        tenant = stack.tenant
        bad = {**CHAT_CONFIG, "model": {"provider": "openai"}}
        refused = stack.api.call(
            "POST", "/v1/apps", tenant, json={"name": "c", "mode": "chat", "model_config": bad}
        )
        assert refused.status_code == 400
        assert refused.json["code"] == "invalid_model_config"
        assert refused.json["details"] == {"field": "model.name"}
        # Saved without a model (allowed), the run is refused with Dify's error naming it.
        app_id = _app(stack, "chat", {"pre_prompt": "Hi"})
        path = f"/v1/apps/{app_id}/model-config"
        form = [{"text-input": {"label": "A", "variable": "9a"}}]
        refused = stack.api.call(
            "PUT", path, tenant, json={"model_config": {"user_input_form": form}}
        )
        assert refused.status_code == 400
        assert refused.json["details"] == {"field": "user_input_form[0].variable"}
        dify = Dify(stack.api, app_key(stack, app_id))
        message = dify.error(
            "POST", "/chat-messages", 400, "app_unavailable",
            json={"query": "q", "inputs": {}, "user": "u"},
        )  # fmt: skip
        assert message.startswith("model_config.model:")
        assert stack.api.rows(WorkflowRun, app_id=app_id) == []


def _llm_inputs(stack: Stack, run_id: str) -> list[dict[str, Any]]:
    """The prompt messages the llm node of a run sent (from its node execution)."""
    (row,) = stack.api.rows(WorkflowNodeExecution, workflow_run_id=run_id, node_type="llm")
    prompts = (row.process_data or {}).get("prompts") or []
    return [{"role": p.get("role"), "text": p.get("text")} for p in prompts]


def test_relay_api_runs_completion_apps_too(settings: Settings) -> None:
    with dify_stack(settings) as stack:
        app_id = _app(stack, "completion", COMPLETION_CONFIG)
        body = {"app_id": app_id, "inputs": {"topic": "tea"}, "user": "cy"}
        answered = stack.api.ok(
            "POST", "/v1/completion-messages", stack.tenant,
            json={**body, "response_mode": "blocking"},
        )  # fmt: skip
        assert "Write a haiku about tea in French." in answered["answer"]
        assert answered["message_id"]
        streamed = stack.api.call("POST", "/v1/completion-messages", stack.tenant, json=body)
        assert streamed.status_code == 200
        assert streamed.mimetype == "text/event-stream"
        assert "event: message_end" in streamed.get_data(as_text=True)
        # The workflow route points a completion app's caller to the right one.
        refused = stack.api.call(
            "POST", "/v1/workflows/run", stack.tenant, json={**body, "response_mode": "blocking"}
        )
        assert refused.status_code == 400
        assert "/v1/completion-messages" in refused.json["message"]
