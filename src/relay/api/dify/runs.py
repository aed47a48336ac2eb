"""Dify's run endpoints: workflow runs, chat messages, completion messages, stop, run detail.

Chat messages serve advanced-chat apps (a workflow) and basic chat apps; completion messages
serve completion apps. Completion and basic chat apps run the graph their model config
describes, through the same runs, scheduler and streams as workflows.

``task_id`` is the run's id: stopping a task stops the run. Streaming answers are Dify's
``data:`` lines (:mod:`relay.api.dify.stream`) read from the run's stream, which ends with a
terminal event whatever happens to the run.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

from flask import Blueprint, Response, jsonify
from pydantic import BaseModel, ConfigDict, Field
from werkzeug.wrappers import Response as WerkzeugResponse

from relay.api.auth import current_runtime
from relay.api.dify.service import DifyError, app_principal, parse
from relay.api.dify.stream import PING_FRAME, DifyStream, dify_usage, timestamp
from relay.services.app_keys import AppPrincipal
from relay.services.chat_service import ChatService
from relay.services.service_api import ServiceApiService
from relay.services.workflow_run_service import StartedRun, WorkflowRunService

runs = Blueprint("dify_runs", __name__)

# App modes (Dify's names) of the apps each endpoint runs.
WORKFLOW, ADVANCED_CHAT, COMPLETION = "workflow", "advanced-chat", "completion"
CHAT = "chat"

User = Field(min_length=1, max_length=255)


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    inputs: dict[str, Any] = Field(default_factory=dict)
    response_mode: Literal["streaming", "blocking"] = "streaming"
    user: str = User
    files: list[dict[str, Any]] = Field(default_factory=list)


class ChatRequest(RunRequest):
    query: str = Field(min_length=1, max_length=100_000)
    conversation_id: str | None = Field(None, max_length=64)
    auto_generate_name: bool = True


class CompletionRequest(RunRequest):
    # Dify's completion body: the form's values in ``inputs``, and an optional ``query``.
    query: str = Field("", max_length=100_000)


class StopRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    user: str = User


def _service() -> ServiceApiService:
    return ServiceApiService(current_runtime())


def _require_mode(*modes: str, code: str) -> str:
    principal = app_principal()
    mode = _service().app(principal.tenant_id, principal.app_id).mode
    if mode not in modes:
        raise DifyError(code, "Please check if your app mode matches the right API route.")
    return mode


def _inputs(body: RunRequest) -> dict[str, Any]:
    principal = app_principal()
    if body.files:
        raise DifyError(
            "invalid_param",
            "files: pass uploaded files through a file input of the start node "
            "(inputs.<variable> = {type, transfer_method: local_file, upload_file_id})",
        )
    return _service().resolve_files(principal.tenant_id, principal.app_id, body.user, body.inputs)


def _snapshot(
    service: ServiceApiService, tenant_id: str, app_id: str, run_id: str
) -> dict[str, Any]:
    row = service.run(tenant_id, app_id, run_id)
    return {
        "status": row["status"],
        "outputs": row["outputs"],
        "error": row["error"],
        "elapsed_time": row["elapsed_time"],
        "total_tokens": row["total_tokens"],
        "total_steps": row["total_steps"],
        "exceptions_count": row["exceptions_count"],
        "finished_at": row["finished_at"],
    }


def _stream(
    started: StartedRun, mode: str, user: str, inputs: Mapping[str, Any]
) -> WerkzeugResponse:
    # The body is read after this request's context is gone: everything it uses is bound here.
    principal = app_principal()
    runtime = current_runtime()
    service = ServiceApiService(runtime)
    tenant, app_id, run_id = principal.tenant_id, principal.app_id, started.run_id
    items = WorkflowRunService(runtime).events(tenant, run_id, user)
    created = service.run(tenant, app_id, run_id)["created_at"]
    mapper = DifyStream(
        mode=mode,
        run_id=started.run_id,
        app_id=principal.app_id,
        created_at=timestamp(created) or 0,
        inputs=inputs,
        finished=lambda: _snapshot(service, tenant, app_id, run_id),
        message_id=started.message_id,
        conversation_id=started.conversation_id,
    )

    def body() -> Iterator[bytes]:
        # A ping first: servers send the headers with the first body bytes, so the client
        # hears back at once even while the run waits for a worker.
        yield PING_FRAME
        yield from mapper.frames(items)

    response = WerkzeugResponse(body(), mimetype="text/event-stream", direct_passthrough=True)
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    return response


@runs.post("/workflows/run")
def run_workflow() -> WerkzeugResponse | tuple[Response, int]:
    body = parse(RunRequest)
    _require_mode(WORKFLOW, code="not_workflow_app")
    principal = app_principal()
    inputs = _inputs(body)
    service = WorkflowRunService(current_runtime())
    started = service.start(principal.tenant_id, principal.app_id, user=body.user, inputs=inputs)
    if body.response_mode == "streaming":
        return _stream(started, WORKFLOW, body.user, body.inputs)
    service.wait(principal.tenant_id, started.run_id, body.user)
    row = _service().run(principal.tenant_id, principal.app_id, started.run_id)
    return jsonify(
        {
            "task_id": started.run_id,
            "workflow_run_id": started.run_id,
            "data": _run_data(row, principal.app_id),
        }
    ), 200


def _run_data(row: Mapping[str, Any], app_id: str) -> dict[str, Any]:
    return {
        "id": row["id"],
        "workflow_id": app_id,
        "status": row["status"],
        "outputs": row["outputs"],
        "error": row["error"],
        "elapsed_time": row["elapsed_time"],
        "total_tokens": row["total_tokens"],
        "total_steps": row["total_steps"],
        "created_at": timestamp(row["created_at"]),
        "finished_at": timestamp(row["finished_at"]),
    }


@runs.get("/workflows/run/<run_id>")
def get_workflow_run(run_id: str) -> tuple[Response, int]:
    principal = app_principal()
    row = _service().run(principal.tenant_id, principal.app_id, run_id)
    data = _run_data(row, principal.app_id) | {"inputs": row["inputs"]}
    return jsonify(data), 200


def _stop(task_id: str) -> tuple[Response, int]:
    body = parse(StopRequest)
    principal = app_principal()
    # The run must be this app's: a key never reaches another app's runs.
    _service().run(principal.tenant_id, principal.app_id, task_id)
    WorkflowRunService(current_runtime()).stop(principal.tenant_id, task_id, body.user)
    return jsonify({"result": "success"}), 200


@runs.post("/workflows/tasks/<task_id>/stop")
def stop_workflow(task_id: str) -> tuple[Response, int]:
    _require_mode(WORKFLOW, code="not_workflow_app")
    return _stop(task_id)


@runs.post("/chat-messages")
def chat_message() -> WerkzeugResponse | tuple[Response, int]:
    body = parse(ChatRequest)
    mode = _require_mode(ADVANCED_CHAT, CHAT, code="not_chat_app")
    principal = app_principal()
    inputs = _inputs(body)
    chat = ChatService(current_runtime())
    started = chat.start(
        principal.tenant_id,
        principal.app_id,
        user=body.user,
        query=body.query,
        inputs=inputs,
        conversation_id=body.conversation_id or None,
    )
    if body.response_mode == "streaming":
        return _stream(started, mode, body.user, body.inputs)
    return _blocking_message(chat, principal, started, body.user, mode)


def _blocking_message(
    chat: ChatService, principal: AppPrincipal, started: StartedRun, user: str, mode: str
) -> tuple[Response, int]:
    """The finished message of a blocking chat or completion call (a completion has no
    conversation of its caller's, so none is named)."""
    result = chat.wait(principal.tenant_id, started, user)
    if result.message_id is None:
        raise DifyError("completion_request_error", result.error or "the run failed")
    created = _service().run(principal.tenant_id, principal.app_id, started.run_id)["created_at"]
    answer: dict[str, Any] = {
        "event": "message",
        "task_id": started.run_id,
        "id": result.message_id,
        "message_id": result.message_id,
    }
    if mode != COMPLETION:
        answer["conversation_id"] = result.conversation_id
    answer |= {
        "mode": mode,
        "answer": result.answer,
        "metadata": {"usage": dify_usage(result.usage), "retriever_resources": []},
        "created_at": timestamp(created),
    }
    return jsonify(answer), 200


@runs.post("/chat-messages/<task_id>/stop")
def stop_chat(task_id: str) -> tuple[Response, int]:
    _require_mode(ADVANCED_CHAT, CHAT, code="not_chat_app")
    return _stop(task_id)


@runs.post("/completion-messages")
def completion_message() -> WerkzeugResponse | tuple[Response, int]:
    body = parse(CompletionRequest)
    _require_mode(COMPLETION, code="not_completion_app")
    principal = app_principal()
    inputs = _inputs(body)
    chat = ChatService(current_runtime())
    started = chat.complete(
        principal.tenant_id, principal.app_id, user=body.user, query=body.query, inputs=inputs
    )
    if body.response_mode == "streaming":
        return _stream(started, COMPLETION, body.user, body.inputs)
    return _blocking_message(chat, principal, started, body.user, COMPLETION)


@runs.post("/completion-messages/<task_id>/stop")
def stop_completion(task_id: str) -> tuple[Response, int]:
    _require_mode(COMPLETION, code="not_completion_app")
    return _stop(task_id)
