"""Dify's conversation, message, file and app-description endpoints.

Lists page the way Dify's do (``limit`` + ``has_more``, cursors ``last_id`` / ``first_id``);
times are Unix seconds. Speech endpoints answer Dify's error shape: relay has no speech model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, ConfigDict, Field

from relay.api.auth import current_runtime
from relay.api.dify.service import DifyError, app_principal, parse, query_args
from relay.api.dify.stream import timestamp
from relay.services.service_api import (
    MAX_UPLOAD_BYTES,
    ConversationRow,
    MessageRow,
    ServiceApiService,
    SortBy,
)
from relay.workflow.model_config import features as model_features
from relay.workflow.model_config import user_input_form

resources = Blueprint("dify_resources", __name__)

_FORM_TYPES = {
    "text-input": "text-input",
    "paragraph": "paragraph",
    "select": "select",
    "number": "number",
    "file": "file",
    "file-list": "file-list",
    "checkbox": "checkbox",
    "json_object": "json_object",
}


class UserQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    user: str = Field(min_length=1, max_length=255)


class ConversationsQuery(UserQuery):
    last_id: str | None = Field(None, max_length=64)
    limit: int = Field(20, ge=1, le=100)
    sort_by: SortBy = "-updated_at"


class VariablesQuery(UserQuery):
    last_id: str | None = Field(None, max_length=255)
    limit: int = Field(20, ge=1, le=100)


class MessagesQuery(UserQuery):
    conversation_id: str = Field(min_length=1, max_length=64)
    first_id: str | None = Field(None, max_length=64)
    limit: int = Field(20, ge=1, le=100)


class RenameRequest(UserQuery):
    name: str | None = Field(None, max_length=255)
    auto_generate: bool = False


class FeedbackRequest(UserQuery):
    rating: Literal["like", "dislike"] | None = None
    content: str | None = Field(None, max_length=10_000)


class LogsQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    keyword: str | None = Field(None, max_length=255)
    status: Literal["succeeded", "failed", "stopped", "running", "partial-succeeded"] | None = None
    page: int = Field(1, ge=1, le=100_000)
    limit: int = Field(20, ge=1, le=100)
    created_by_end_user_session_id: str | None = Field(None, max_length=255)


def _service() -> ServiceApiService:
    return ServiceApiService(current_runtime())


def _conversation(row: ConversationRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "inputs": row.inputs,
        "status": row.status,
        "introduction": "",
        "created_at": timestamp(row.created_at),
        "updated_at": timestamp(row.updated_at),
    }


def _message(row: MessageRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "conversation_id": row.conversation_id,
        "parent_message_id": None,
        "inputs": row.inputs,
        "query": row.query,
        "answer": row.answer,
        "message_files": [],
        "feedback": {"rating": row.rating} if row.rating else None,
        "retriever_resources": [],
        "agent_thoughts": [],
        "status": row.status,
        "error": row.error,
        "created_at": timestamp(row.created_at),
    }


# --- conversations -------------------------------------------------------------------------------


@resources.get("/conversations")
def list_conversations() -> tuple[Response, int]:
    q = parse(ConversationsQuery, query_args())
    p = app_principal()
    rows, more = _service().list_conversations(
        p.tenant_id, p.app_id, q.user, last_id=q.last_id, limit=q.limit, sort_by=q.sort_by
    )
    return jsonify(
        {"limit": q.limit, "has_more": more, "data": [_conversation(r) for r in rows]}
    ), 200


@resources.delete("/conversations/<conversation_id>")
def delete_conversation(conversation_id: str) -> tuple[Response, int]:
    values = dict(query_args())
    if request.get_data(cache=True).strip():
        values.update(parse(UserQuery).model_dump())
    body = parse(UserQuery, values)
    p = app_principal()
    _service().delete_conversation(p.tenant_id, p.app_id, body.user, conversation_id)
    return Response(status=204), 204


@resources.post("/conversations/<conversation_id>/name")
def rename_conversation(conversation_id: str) -> tuple[Response, int]:
    body = parse(RenameRequest)
    p = app_principal()
    row = _service().rename_conversation(
        p.tenant_id, p.app_id, body.user, conversation_id,
        name=body.name, auto=body.auto_generate,
    )  # fmt: skip
    return jsonify(_conversation(row)), 200


@resources.get("/conversations/<conversation_id>/variables")
def conversation_variables(conversation_id: str) -> tuple[Response, int]:
    q = parse(VariablesQuery, query_args())
    p = app_principal()
    items, more = _service().conversation_variables(
        p.tenant_id, p.app_id, q.user, conversation_id, last_id=q.last_id, limit=q.limit
    )
    data = [
        item
        | {"created_at": timestamp(item["created_at"]), "updated_at": timestamp(item["updated_at"])}
        for item in items
    ]
    return jsonify({"limit": q.limit, "has_more": more, "data": data}), 200


# --- messages ------------------------------------------------------------------------------------


@resources.get("/messages")
def list_messages() -> tuple[Response, int]:
    q = parse(MessagesQuery, query_args())
    p = app_principal()
    rows, more = _service().list_messages(
        p.tenant_id, p.app_id, q.user, q.conversation_id, first_id=q.first_id, limit=q.limit
    )
    return jsonify({"limit": q.limit, "has_more": more, "data": [_message(r) for r in rows]}), 200


@resources.post("/messages/<message_id>/feedbacks")
def message_feedback(message_id: str) -> tuple[Response, int]:
    body = parse(FeedbackRequest)
    p = app_principal()
    _service().feedback(
        p.tenant_id, p.app_id, body.user, message_id, rating=body.rating, content=body.content
    )
    return jsonify({"result": "success"}), 200


@resources.get("/messages/<message_id>/suggested")
def suggested_questions(message_id: str) -> tuple[Response, int]:
    q = parse(UserQuery, query_args())
    p = app_principal()
    questions = _service().suggested_questions(p.tenant_id, p.app_id, q.user, message_id)
    return jsonify({"result": "success", "data": questions}), 200


# --- workflow logs -------------------------------------------------------------------------------


@resources.get("/workflows/logs")
def workflow_logs() -> tuple[Response, int]:
    q = parse(LogsQuery, query_args())
    p = app_principal()
    rows, total = _service().workflow_logs(
        p.tenant_id, p.app_id, status=q.status, user=q.created_by_end_user_session_id,
        keyword=q.keyword, page=q.page, limit=q.limit,
    )  # fmt: skip
    data = [
        {
            "id": r.id,
            "workflow_run": {
                "id": r.id,
                "version": "published",
                "status": r.status,
                "error": r.error,
                "elapsed_time": r.elapsed_time,
                "total_tokens": r.total_tokens,
                "total_steps": r.total_steps,
                "created_at": timestamp(r.created_at),
                "finished_at": timestamp(r.finished_at),
            },
            "created_from": "service-api",
            "created_by_role": "end_user",
            "created_by_account": None,
            "created_by_end_user": {
                "id": r.created_by,
                "type": "service_api",
                "is_anonymous": False,
                "session_id": None,
            },
            "created_at": timestamp(r.created_at),
        }
        for r in rows
    ]
    return jsonify(
        {
            "page": q.page,
            "limit": q.limit,
            "total": total,
            "has_more": q.page * q.limit < total,
            "data": data,
        }
    ), 200


# --- files ---------------------------------------------------------------------------------------


@resources.post("/files/upload")
def upload_file() -> tuple[Response, int]:
    if request.content_length is not None and request.content_length > MAX_UPLOAD_BYTES + 65536:
        raise DifyError("file_too_large", "File size exceeded.", 413)
    files = request.files.getlist("file")
    if not files:
        raise DifyError("no_file_uploaded", "Please upload your file.")
    if len(files) > 1 or len(request.files) > 1:
        raise DifyError("too_many_files", "Only one file is allowed.")
    body = parse(UserQuery, {"user": request.form.get("user", "")})
    upload = files[0]
    data = upload.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise DifyError("file_too_large", "File size exceeded.", 413)
    p = app_principal()
    saved = _service().upload(
        p.tenant_id, p.app_id, body.user,
        name=upload.filename or "", data=data, mime_type=upload.mimetype or "",
    )  # fmt: skip
    out = saved.model_dump()
    out["created_at"] = timestamp(saved.created_at)
    return jsonify(out), 201


# --- the app -------------------------------------------------------------------------------------


def _form(graph: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    nodes = (graph or {}).get("nodes") or []
    start = next(
        (
            n
            for n in nodes
            if isinstance(n, Mapping) and (n.get("data") or {}).get("type") == "start"
        ),
        None,
    )
    form: list[dict[str, Any]] = []
    for var in ((start or {}).get("data") or {}).get("variables") or []:
        kind = _FORM_TYPES.get(str(var.get("type") or "text-input"), "text-input")
        entry = {
            "label": var.get("label") or var.get("variable"),
            "variable": var.get("variable"),
            "required": bool(var.get("required", False)),
            "default": var.get("default", ""),
        }
        if var.get("max_length") is not None:
            entry["max_length"] = var["max_length"]
        if kind == "select":
            entry["options"] = list(var.get("options") or [])
        form.append({kind: entry})
    return form


BASIC_MODES = frozenset({"completion", "chat"})


@resources.get("/parameters")
def parameters() -> tuple[Response, int]:
    p = app_principal()
    app = _service().app(p.tenant_id, p.app_id)
    basic = app.mode in BASIC_MODES
    # A completion or chat app's features and form are in its model config.
    features = model_features(app.model_config) if basic else dict(app.workflow_features or {})
    form = user_input_form(app.model_config) if basic else _form(app.published_workflow)

    def enabled(name: str) -> dict[str, Any]:
        value = features.get(name)
        return dict(value) if isinstance(value, Mapping) else {"enabled": False}

    return jsonify(
        {
            "opening_statement": features.get("opening_statement", ""),
            "suggested_questions": list(features.get("suggested_questions") or []),
            "suggested_questions_after_answer": enabled("suggested_questions_after_answer"),
            "speech_to_text": {"enabled": False},
            "text_to_speech": {"enabled": False},
            "retriever_resource": enabled("retriever_resource"),
            "annotation_reply": {"enabled": False},
            "more_like_this": enabled("more_like_this"),
            "sensitive_word_avoidance": enabled("sensitive_word_avoidance"),
            "user_input_form": form,
            "file_upload": dict(features.get("file_upload") or {"enabled": False}),
            "system_parameters": {
                "file_size_limit": MAX_UPLOAD_BYTES // (1024 * 1024),
                "image_file_size_limit": MAX_UPLOAD_BYTES // (1024 * 1024),
                "audio_file_size_limit": MAX_UPLOAD_BYTES // (1024 * 1024),
                "video_file_size_limit": MAX_UPLOAD_BYTES // (1024 * 1024),
                "workflow_file_upload_limit": 10,
            },
        }
    ), 200


@resources.get("/info")
def info() -> tuple[Response, int]:
    p = app_principal()
    app = _service().app(p.tenant_id, p.app_id)
    return jsonify(
        {
            "name": app.name,
            "description": app.description,
            "tags": [],
            "mode": app.mode,
            "author_name": "",
        }
    ), 200


@resources.get("/meta")
def meta() -> tuple[Response, int]:
    return jsonify({"tool_icons": {}}), 200


@resources.post("/audio-to-text")
def audio_to_text() -> tuple[Response, int]:
    raise DifyError(
        "provider_not_support_speech_to_text",
        "Speech to text is not supported: relay has no speech model.",
    )


@resources.post("/text-to-audio")
def text_to_audio() -> tuple[Response, int]:
    raise DifyError(
        "provider_not_support_text_to_speech",
        "Text to speech is not supported: relay has no speech model.",
    )


@resources.route(
    "/<path:unknown>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], strict_slashes=False
)
def not_found(unknown: str) -> tuple[Response, int]:
    """Any other path under the prefix: Dify's 404 (after the key was checked)."""
    raise DifyError("not_found", f"The requested URL was not found: /{unknown[:200]}", 404)
