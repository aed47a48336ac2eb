"""What the app Service API reads and writes besides runs: conversations, messages, feedback,
suggested questions, conversation variables, uploaded files and workflow logs.

Every query is scoped by tenant, app *and* end user (the ``user`` string the caller sends, mapped
to relay's end-user id): another user's conversation or message is not found, as one that does
not exist. Calls to the LLM (suggested questions, generated names) happen outside any
transaction.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy import String, and_, cast, delete, func, or_, select
from sqlalchemy.orm import Session

from relay.config import WorkflowSettings
from relay.errors import BadRequest, NotFound
from relay.models import (
    App,
    AppMode,
    Conversation,
    ConversationStatus,
    CreatorRole,
    Message,
    MessageFeedback,
    UploadFile,
    WorkflowRun,
    new_id,
    utcnow,
)
from relay.runtime import Runtime
from relay.services.app_service import require_app
from relay.services.message_service import CONVERSATION_NAME_LENGTH
from relay.services.run_streams import end_user_id
from relay.workflow import ChatMessage
from relay.workflow.config import LLMProviderConfig, LLMSettings
from relay.workflow.llm.base import ChatRequest
from relay.workflow.llm.providers import LLMProviders
from relay.workflow.model_config import features as model_features
from relay.workflow.stop import StopToken

MAX_UPLOAD_BYTES = 15 * 1024 * 1024
SUGGESTED_QUESTIONS = 3
_NAME_PROMPT = (
    "Give a short title (at most 8 words) for a conversation that starts with this message. "
    "Answer with the title only.\n\n"
)
_SUGGEST_PROMPT = (
    "Suggest {n} short questions the user may ask next, as a JSON array of strings.\n\n"
    "User: {query}\nAssistant: {answer}"
)

SortBy = Literal["created_at", "-created_at", "updated_at", "-updated_at"]


class UnknownUploadFile(BadRequest):
    """A run input names an uploaded file that does not exist for this app and user."""

    code = "invalid_param"


class SuggestionsDisabled(BadRequest):
    """The app does not offer suggested questions after an answer."""


@dataclass(frozen=True)
class ConversationRow:
    id: str
    name: str
    inputs: dict[str, Any]
    status: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class MessageRow:
    id: str
    conversation_id: str
    inputs: dict[str, Any]
    query: str
    answer: str
    status: str
    error: str | None
    rating: str | None
    created_at: datetime


class UploadedFile(BaseModel):
    """An uploaded file as the API shows it."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    size: int
    extension: str
    mime_type: str
    created_by: str
    created_at: datetime


@dataclass(frozen=True)
class RunLogRow:
    id: str
    status: str
    error: str | None
    elapsed_time: float
    total_tokens: int
    total_steps: int
    created_at: datetime
    finished_at: datetime | None
    created_by: str


def llm_settings(settings: WorkflowSettings) -> LLMSettings:
    """The provider that writes names and suggestions: the one llm nodes use by default."""
    return LLMSettings(
        default=LLMProviderConfig(
            kind=settings.llm_provider,
            base_url=settings.llm_base_url,
            api_key=settings.llm_api_key,
            model=settings.llm_model,
            token_delay=0.0,
            reply=settings.llm_reply,
            timeout=settings.llm_timeout,
        )
    )


def without_file_bytes(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """``inputs`` as the caller sees them: uploaded files without their inline bytes."""

    def strip(item: Any) -> Any:
        if isinstance(item, Mapping) and "content_base64" in item:
            return {k: v for k, v in item.items() if k != "content_base64"}
        return item

    return {
        key: [strip(i) for i in value] if isinstance(value, list) else strip(value)
        for key, value in inputs.items()
    }


def _conversation(row: Conversation) -> ConversationRow:
    return ConversationRow(
        id=row.id,
        name=row.name,
        inputs=dict(row.inputs or {}),
        status=row.status,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def parse_suggestions(text: str, limit: int = SUGGESTED_QUESTIONS) -> list[str]:
    """Questions from a model's reply: a JSON array when it gave one, else its non-empty lines."""
    start, end = text.find("["), text.rfind("]")
    if 0 <= start < end:
        try:
            found = json.loads(text[start : end + 1])
        except ValueError:
            found = None
        if isinstance(found, list) and all(isinstance(q, str) for q in found):
            return [q.strip() for q in found if q.strip()][:limit]
    lines = [line.strip(" -*\t") for line in text.splitlines()]
    return [line for line in lines if line][:limit]


class ServiceApiService:
    """Reads and writes of one app's Service API, for one tenant."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    # --- conversations ---------------------------------------------------------------------------

    def list_conversations(
        self,
        tenant_id: str,
        app_id: str,
        user: str,
        *,
        last_id: str | None,
        limit: int,
        sort_by: SortBy = "-updated_at",
    ) -> tuple[list[ConversationRow], bool]:
        """The user's conversations in ``sort_by`` order after ``last_id``; and whether more."""
        owner = end_user_id(tenant_id, user)
        column = Conversation.updated_at if "updated_at" in sort_by else Conversation.created_at
        descending = sort_by.startswith("-")
        with self.runtime.db.session() as session:
            query = select(Conversation).where(
                Conversation.tenant_id == tenant_id,
                Conversation.app_id == app_id,
                Conversation.from_end_user_id == owner,
                Conversation.status == ConversationStatus.NORMAL,
            )
            if last_id is not None:
                last = self._owned_conversation(session, tenant_id, app_id, owner, last_id)
                pivot = getattr(last, column.key)
                if descending:
                    query = query.where(
                        or_(column < pivot, and_(column == pivot, Conversation.id < last.id))
                    )
                else:
                    query = query.where(
                        or_(column > pivot, and_(column == pivot, Conversation.id > last.id))
                    )
            order = (
                (column.desc(), Conversation.id.desc()) if descending else (column, Conversation.id)
            )
            rows = list(session.scalars(query.order_by(*order).limit(limit + 1)))
        return [_conversation(r) for r in rows[:limit]], len(rows) > limit

    def delete_conversation(self, tenant_id: str, app_id: str, user: str, cid: str) -> None:
        """Delete the conversation with its messages and their feedback."""
        owner = end_user_id(tenant_id, user)
        with self.runtime.db.transaction() as session:
            row = self._owned_conversation(session, tenant_id, app_id, owner, cid)
            session.execute(
                delete(MessageFeedback).where(
                    MessageFeedback.tenant_id == tenant_id, MessageFeedback.conversation_id == cid
                )
            )
            session.execute(
                delete(Message).where(
                    Message.tenant_id == tenant_id, Message.conversation_id == cid
                )
            )
            session.delete(row)

    def rename_conversation(
        self, tenant_id: str, app_id: str, user: str, cid: str, *, name: str | None, auto: bool
    ) -> ConversationRow:
        """Set the name, or have the LLM write one from the first message (``auto``)."""
        owner = end_user_id(tenant_id, user)
        with self.runtime.db.session() as session:
            self._owned_conversation(session, tenant_id, app_id, owner, cid)
            first = session.scalar(
                select(Message.query)
                .where(Message.tenant_id == tenant_id, Message.conversation_id == cid)
                .order_by(Message.created_at, Message.id)
                .limit(1)
            )
        if auto:
            # The model call happens before the write transaction, never inside it.
            name = self._generated_name(first or "")
        if not name or not name.strip():
            raise BadRequest("name is required unless auto_generate is true")
        with self.runtime.db.transaction() as session:
            row = self._owned_conversation(session, tenant_id, app_id, owner, cid)
            row.name = name.strip()[:255]
            row.updated_at = utcnow()
            session.flush()
            return _conversation(row)

    def conversation_variables(
        self, tenant_id: str, app_id: str, user: str, cid: str, *, last_id: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], bool]:
        """The app's declared conversation variables (Dify's fields), after ``last_id``."""
        owner = end_user_id(tenant_id, user)
        with self.runtime.db.session() as session:
            conversation = self._owned_conversation(session, tenant_id, app_id, owner, cid)
            app = require_app(session, tenant_id, app_id)
            declared = list(app.conversation_variables or [])
        items: list[dict[str, Any]] = []
        for entry in declared:
            if not isinstance(entry, Mapping) or not entry.get("name"):
                continue
            items.append(
                {
                    "id": str(entry.get("id") or entry["name"]),
                    "name": str(entry["name"]),
                    "value_type": str(entry.get("value_type") or "string"),
                    "value": entry.get("value"),
                    "description": str(entry.get("description") or ""),
                    "created_at": conversation.created_at,
                    "updated_at": conversation.updated_at,
                }
            )
        if last_id is not None:
            ids = [item["id"] for item in items]
            if last_id not in ids:
                raise NotFound("Conversation variable not found")
            items = items[ids.index(last_id) + 1 :]
        return items[:limit], len(items) > limit

    # --- messages --------------------------------------------------------------------------------

    def list_messages(
        self, tenant_id: str, app_id: str, user: str, cid: str, *, first_id: str | None, limit: int
    ) -> tuple[list[MessageRow], bool]:
        """The conversation's messages before ``first_id`` (newest page), oldest first."""
        owner = end_user_id(tenant_id, user)
        with self.runtime.db.session() as session:
            conversation = self._owned_conversation(session, tenant_id, app_id, owner, cid)
            query = select(Message).where(
                Message.tenant_id == tenant_id, Message.conversation_id == cid
            )
            if first_id is not None:
                first = session.scalar(query.where(Message.id == first_id))
                if first is None:
                    raise NotFound("First message not found")
                query = query.where(
                    or_(
                        Message.created_at < first.created_at,
                        and_(Message.created_at == first.created_at, Message.id < first.id),
                    )
                )
            rows = list(
                session.scalars(
                    query.order_by(Message.created_at.desc(), Message.id.desc()).limit(limit + 1)
                )
            )
            page = rows[:limit]
            feedback = session.execute(
                select(MessageFeedback.message_id, MessageFeedback.rating).where(
                    MessageFeedback.tenant_id == tenant_id,
                    MessageFeedback.from_end_user_id == owner,
                    MessageFeedback.message_id.in_([r.id for r in page]),
                )
            )
            ratings: dict[str, str] = {row.message_id: row.rating for row in feedback}
            inputs = dict(conversation.inputs or {})
        views = [
            MessageRow(
                id=r.id,
                conversation_id=r.conversation_id,
                inputs=inputs,
                query=r.query,
                answer=r.answer,
                status=r.status,
                error=r.error,
                rating=ratings.get(r.id),
                created_at=r.created_at,
            )
            for r in reversed(page)
        ]
        return views, len(rows) > limit

    def feedback(
        self,
        tenant_id: str,
        app_id: str,
        user: str,
        message_id: str,
        *,
        rating: str | None,
        content: str | None,
    ) -> None:
        """Rate a message (``like``/``dislike``); ``None`` withdraws the rating."""
        owner = end_user_id(tenant_id, user)
        with self.runtime.db.transaction() as session:
            message = self._owned_message(session, tenant_id, app_id, owner, message_id)
            found = session.scalar(
                select(MessageFeedback).where(
                    MessageFeedback.tenant_id == tenant_id,
                    MessageFeedback.message_id == message.id,
                    MessageFeedback.from_end_user_id == owner,
                )
            )
            if rating is None:
                if found is None:
                    raise NotFound("Feedback not found")
                session.delete(found)
                return
            if found is None:
                session.add(
                    MessageFeedback(
                        id=new_id(),
                        tenant_id=tenant_id,
                        app_id=app_id,
                        conversation_id=message.conversation_id,
                        message_id=message.id,
                        rating=rating,
                        content=content,
                        from_end_user_id=owner,
                    )
                )
            else:
                found.rating = rating
                found.content = content

    def suggested_questions(
        self, tenant_id: str, app_id: str, user: str, message_id: str
    ) -> list[str]:
        """Questions the user may ask next, written by the LLM from the message and its answer."""
        owner = end_user_id(tenant_id, user)
        with self.runtime.db.session() as session:
            message = self._owned_message(session, tenant_id, app_id, owner, message_id)
            app = require_app(session, tenant_id, app_id)
            features = (
                model_features(app.model_config)
                if app.mode in (AppMode.CHAT, AppMode.COMPLETION)
                else dict(app.workflow_features or {})
            )
            query, answer = message.query, message.answer
        setting = features.get("suggested_questions_after_answer")
        if not (isinstance(setting, Mapping) and setting.get("enabled")):
            raise SuggestionsDisabled("Suggested Questions Is Disabled.")
        prompt = _SUGGEST_PROMPT.format(n=SUGGESTED_QUESTIONS, query=query, answer=answer)
        return parse_suggestions(self._complete(prompt))

    # --- files -----------------------------------------------------------------------------------

    def upload(
        self, tenant_id: str, app_id: str, user: str, *, name: str, data: bytes, mime_type: str
    ) -> UploadedFile:
        """Keep an uploaded file for the user's runs of this app."""
        name = posixpath.basename(name.replace("\\", "/")).strip()[:255]
        if not name:
            raise BadRequest("the file has no name")
        extension = posixpath.splitext(name)[1].lstrip(".").lower()[:32]
        if not mime_type or mime_type == "application/octet-stream":
            mime_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        owner = end_user_id(tenant_id, user)
        with self.runtime.db.transaction() as session:
            require_app(session, tenant_id, app_id)
            row = UploadFile(
                id=new_id(),
                tenant_id=tenant_id,
                app_id=app_id,
                name=name,
                size=len(data),
                extension=extension,
                mime_type=mime_type,
                content=data,
                created_by=owner,
                created_at=utcnow(),
            )
            session.add(row)
            session.flush()
            return UploadedFile(
                id=row.id, name=row.name, size=row.size, extension=row.extension,
                mime_type=row.mime_type, created_by=owner, created_at=row.created_at,
            )  # fmt: skip

    def resolve_files(
        self, tenant_id: str, app_id: str, user: str, inputs: Mapping[str, Any]
    ) -> dict[str, Any]:
        """``inputs`` with each ``local_file`` reference replaced by the uploaded file's object.

        A file input in Dify's form (``{"type", "transfer_method": "local_file",
        "upload_file_id"}``, alone or in a list) becomes the file object relay's nodes read,
        its bytes inline. An id that is not this user's upload of this app is a 400.
        """
        wanted: list[str] = []
        for value in inputs.values():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, Mapping) and item.get("transfer_method") == "local_file":
                    wanted.append(str(item.get("upload_file_id") or ""))
        if not wanted:
            return dict(inputs)
        owner = end_user_id(tenant_id, user)
        with self.runtime.db.session() as session:
            rows = {
                row.id: row
                for row in session.scalars(
                    select(UploadFile).where(
                        UploadFile.tenant_id == tenant_id,
                        UploadFile.app_id == app_id,
                        UploadFile.created_by == owner,
                        UploadFile.id.in_(wanted),
                    )
                )
            }
            missing = [file_id for file_id in wanted if file_id not in rows]
            if missing:
                raise UnknownUploadFile(
                    "upload_file_id does not name a file uploaded to this app by this user",
                    details={"upload_file_id": missing[0][:64]},
                )

            def resolved(item: Any) -> Any:
                if not (isinstance(item, Mapping) and item.get("transfer_method") == "local_file"):
                    return item
                row = rows[str(item["upload_file_id"])]
                return {
                    "type": item.get("type") or "document",
                    "transfer_method": "local_file",
                    "upload_file_id": row.id,
                    "filename": row.name,
                    "extension": "." + row.extension if row.extension else "",
                    "mime_type": row.mime_type,
                    "size": row.size,
                    "content_base64": base64.b64encode(row.content).decode(),
                }

            return {
                key: [resolved(i) for i in value] if isinstance(value, list) else resolved(value)
                for key, value in inputs.items()
            }

    # --- workflow logs ---------------------------------------------------------------------------

    def workflow_logs(
        self,
        tenant_id: str,
        app_id: str,
        *,
        status: str | None,
        user: str | None,
        keyword: str | None,
        page: int,
        limit: int,
    ) -> tuple[list[RunLogRow], int]:
        """The app's runs started through the API, newest first; and their total."""
        query = select(WorkflowRun).where(
            WorkflowRun.tenant_id == tenant_id,
            WorkflowRun.app_id == app_id,
            WorkflowRun.created_by_role == CreatorRole.END_USER,
        )
        if status:
            query = query.where(WorkflowRun.status == status)
        if user:
            query = query.where(WorkflowRun.created_by == end_user_id(tenant_id, user))
        if keyword:
            # Inputs and outputs are JSON: matched as text.
            pattern = f"%{keyword}%"
            query = query.where(
                or_(
                    cast(WorkflowRun.inputs, String).ilike(pattern),
                    cast(WorkflowRun.outputs, String).ilike(pattern),
                )
            )
        with self.runtime.db.session() as session:
            total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = session.scalars(
                query.order_by(WorkflowRun.created_at.desc(), WorkflowRun.id.desc())
                .offset((page - 1) * limit)
                .limit(limit)
            )
            found = [
                RunLogRow(
                    id=r.id,
                    status=r.status,
                    error=r.error,
                    elapsed_time=r.elapsed_time,
                    total_tokens=r.total_tokens,
                    total_steps=r.total_steps,
                    created_at=r.created_at,
                    finished_at=r.finished_at,
                    created_by=r.created_by,
                )
                for r in rows
            ]
        return found, int(total)

    def run(self, tenant_id: str, app_id: str, run_id: str) -> dict[str, Any]:
        """One run of the app (any end user's), as plain values; ``NotFound`` otherwise."""
        with self.runtime.db.session() as session:
            row = session.scalar(
                select(WorkflowRun).where(
                    WorkflowRun.tenant_id == tenant_id,
                    WorkflowRun.app_id == app_id,
                    WorkflowRun.id == run_id,
                )
            )
            if row is None:
                raise NotFound("Workflow run not found")
            return {
                "id": row.id, "status": row.status, "inputs": without_file_bytes(row.inputs or {}),
                "outputs": row.outputs, "error": row.error, "elapsed_time": row.elapsed_time,
                "total_tokens": row.total_tokens, "total_steps": row.total_steps,
                "exceptions_count": row.exceptions_count, "created_at": row.created_at,
                "finished_at": row.finished_at, "created_by": row.created_by,
            }  # fmt: skip

    def app(self, tenant_id: str, app_id: str) -> App:
        """The app (detached), for its name, mode, features and start-node form."""
        with self.runtime.db.session() as session:
            row = require_app(session, tenant_id, app_id)
            session.expunge(row)
            return row

    # --- helpers ---------------------------------------------------------------------------------

    def _complete(self, prompt: str) -> str:
        providers = LLMProviders(llm_settings(self.runtime.settings.workflow))
        try:
            provider, model = providers.provider_for("service-api", "", "")
            request = ChatRequest(model=model, messages=(ChatMessage("user", prompt),))
            return "".join(delta.text for delta in provider.stream(request, StopToken()))
        finally:
            providers.close()

    def _generated_name(self, first_query: str) -> str:
        if not first_query.strip():
            return "New conversation"
        text = self._complete(_NAME_PROMPT + first_query).strip().splitlines()
        name = text[0].strip().strip('"') if text else ""
        return name[:CONVERSATION_NAME_LENGTH] or first_query.strip()[:CONVERSATION_NAME_LENGTH]

    @staticmethod
    def _owned_conversation(
        session: Session, tenant_id: str, app_id: str, owner: str, cid: str
    ) -> Conversation:
        row = session.scalar(
            select(Conversation).where(
                Conversation.tenant_id == tenant_id,
                Conversation.app_id == app_id,
                Conversation.id == cid,
                Conversation.from_end_user_id == owner,
            )
        )
        if row is None:
            raise NotFound("Conversation Not Exists.")
        return row

    @staticmethod
    def _owned_message(
        session: Session, tenant_id: str, app_id: str, owner: str, message_id: str
    ) -> Message:
        row = session.scalar(
            select(Message)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .where(
                Message.tenant_id == tenant_id,
                Message.app_id == app_id,
                Message.id == message_id,
                Conversation.from_end_user_id == owner,
            )
        )
        if row is None:
            raise NotFound("Message Not Exists.")
        return row
