"""Documents of the calling tenant's datasets: upload (JSON or multipart files), read, delete;
and the steering of their indexing: pause, resume, retry, enable, disable, status log."""

from __future__ import annotations

from pathlib import PurePath
from typing import Annotated

from flask import Blueprint, Response, request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import RequestEntityTooLarge

from relay.api.auth import current_runtime, tenant_id
from relay.api.body import Name, no_content, parse_body, parse_query, respond
from relay.api.input_guard import check_text, check_texts
from relay.api.openapi import TENANT, documented
from relay.errors import BadRequest
from relay.services.document_service import (
    MAX_BATCH_DELETE,
    MAX_DOCUMENT_BYTES,
    DocumentBatch,
    DocumentFormat,
    DocumentPage,
    DocumentService,
    DocumentTooLarge,
    DocumentView,
    NewDocument,
)
from relay.services.indexing_service import (
    MAX_RETRY,
    DocumentList,
    IndexingService,
    StatusLog,
    StatusLogQuery,
)
from relay.services.pagination import PageParams

documents = Blueprint("documents", __name__)

_TAGS = ("documents",)
_FORMAT_BY_SUFFIX = {
    ".md": DocumentFormat.MARKDOWN,
    ".markdown": DocumentFormat.MARKDOWN,
    ".html": DocumentFormat.HTML,
    ".htm": DocumentFormat.HTML,
}


class DocumentCreate(BaseModel):
    """One document as JSON. ``content`` may be at most 1 MiB of UTF-8."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    content: str
    format: DocumentFormat | None = Field(
        None, description="Default: from the name's extension, else HTML pages are detected"
    )


DocumentId = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class DocumentIds(BaseModel):
    """Documents of the dataset, by id."""

    model_config = ConfigDict(extra="forbid")

    ids: list[DocumentId] = Field(min_length=1, max_length=max(MAX_BATCH_DELETE, MAX_RETRY))


class DocumentUpload(BaseModel):
    """Multipart upload: one or more ``file`` parts (UTF-8 text, at most 1 MiB each)."""

    model_config = ConfigDict(extra="forbid")

    file: bytes = Field(description="The file; repeat the part to upload several")
    name: Name | None = Field(None, description="Document name (one file only); default: file name")
    format: DocumentFormat | None = Field(None, description="Default: from the file's extension")


class _UploadFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    format: DocumentFormat | None = None


def _service() -> DocumentService:
    return DocumentService(current_runtime())


def _indexing() -> IndexingService:
    return IndexingService(current_runtime())


def _max_upload_request_bytes() -> int:
    """Room for the largest upload: every file at the limit (multipart) or one document whose
    JSON escaping grew it (each byte can become a six-character \\u escape)."""
    files = current_runtime().settings.indexing.batch_upload_limit
    return max(files, 6) * MAX_DOCUMENT_BYTES + 64 * 1024


def _too_large() -> DocumentTooLarge:
    return DocumentTooLarge(
        f"upload is larger than allowed; documents are limited to {MAX_DOCUMENT_BYTES} bytes each",
        details={"limit": MAX_DOCUMENT_BYTES},
    )


def _from_file(part: FileStorage, fields: _UploadFields, single: bool) -> NewDocument:
    filename = PurePath(part.filename or "").name
    data = part.stream.read(MAX_DOCUMENT_BYTES + 1)
    if len(data) > MAX_DOCUMENT_BYTES:
        raise DocumentTooLarge(
            f"file {filename!r} is larger than {MAX_DOCUMENT_BYTES} bytes",
            details={"name": filename, "limit": MAX_DOCUMENT_BYTES},
        )
    try:
        content = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadRequest(
            f"file {filename!r} is not UTF-8 text", details={"field": "file"}
        ) from None
    check_text(filename, "file name")
    check_text(content, f"file {filename!r}")
    name = (fields.name if single else None) or filename
    if not name:
        raise BadRequest(
            "name the document: a `name` field or a file name", details={"field": "name"}
        )
    suffix = PurePath(filename).suffix.lower()
    fmt = fields.format or _FORMAT_BY_SUFFIX.get(suffix)
    return NewDocument(name=name[:255], content=content, format=fmt)


def _new_documents() -> list[NewDocument]:
    if request.mimetype != "multipart/form-data":
        body = parse_body(DocumentCreate)
        return [NewDocument(name=body.name, content=body.content, format=body.format)]
    parts = request.files.getlist("file")
    if not parts:
        raise BadRequest(
            "a multipart upload needs at least one `file` part", details={"field": "file"}
        )
    check_texts(request.form.items(multi=True), "form")
    fields = _UploadFields.model_validate(request.form.to_dict())
    if fields.name and len(parts) > 1:
        raise BadRequest("`name` is for single-file uploads", details={"field": "name"})
    return [_from_file(part, fields, single=len(parts) == 1) for part in parts]


@documents.post("/datasets/<dataset_id>/documents")
@documented(
    tags=_TAGS,
    security=TENANT,
    json=DocumentCreate,
    form=DocumentUpload,
    ok=(201, DocumentBatch),
    errors=(403, 404, 413, 429),
)
def upload_documents(dataset_id: str) -> tuple[Response, int]:
    """Upload documents (JSON or multipart); they are indexed in the background.

    403 ``plan_limit`` when the upload breaks a limit of the tenant's plan (documents per
    upload, documents per tenant); ``details.documents`` gives the reason for each document.
    """
    limit = _max_upload_request_bytes()
    if (request.content_length or 0) > limit:
        raise _too_large()  # refused before reading the body
    request.max_content_length = limit  # bodies without a length, too
    try:
        new = _new_documents()
    except RequestEntityTooLarge:
        raise _too_large() from None
    return respond(_service().upload(tenant_id(), dataset_id, new), 201)


@documents.get("/datasets/<dataset_id>/documents")
@documented(tags=_TAGS, security=TENANT, query=PageParams, ok=(200, DocumentPage), errors=(404,))
def list_documents(dataset_id: str) -> tuple[Response, int]:
    """List the dataset's documents, newest first, with their indexing status."""
    return respond(_service().list_documents(tenant_id(), dataset_id, parse_query(PageParams)))


@documents.get("/datasets/<dataset_id>/documents/<document_id>")
@documented(tags=_TAGS, security=TENANT, ok=(200, DocumentView), errors=(404,))
def get_document(dataset_id: str, document_id: str) -> tuple[Response, int]:
    """One document: indexing status, error, word count and segment count."""
    return respond(_service().get(tenant_id(), dataset_id, document_id))


@documents.delete("/datasets/<dataset_id>/documents/<document_id>")
@documented(tags=_TAGS, security=TENANT, ok=(204, None), errors=(404,))
def delete_document(dataset_id: str, document_id: str) -> tuple[Response, int]:
    """Delete a document and its segments."""
    _service().delete(tenant_id(), dataset_id, document_id)
    return no_content()


@documents.post("/datasets/<dataset_id>/documents/batch-delete")
@documented(tags=_TAGS, security=TENANT, json=DocumentIds, ok=(204, None), errors=(404,))
def batch_delete_documents(dataset_id: str) -> tuple[Response, int]:
    """Delete several documents, all or none; their index is cleaned up in the background."""
    _service().batch_delete(tenant_id(), dataset_id, parse_body(DocumentIds).ids)
    return no_content()


@documents.post("/datasets/<dataset_id>/documents/retry")
@documented(
    tags=_TAGS, security=TENANT, json=DocumentIds, ok=(200, DocumentList), errors=(404, 409)
)
def retry_documents(dataset_id: str) -> tuple[Response, int]:
    """Index documents in error or paused again (409 if any is in another status)."""
    return respond(_indexing().retry(tenant_id(), dataset_id, parse_body(DocumentIds).ids))


@documents.put("/datasets/<dataset_id>/documents/<document_id>/pause")
@documented(tags=_TAGS, security=TENANT, ok=(200, DocumentView), errors=(404, 409))
def pause_document(dataset_id: str, document_id: str) -> tuple[Response, int]:
    """Pause a waiting or indexing document (at the indexing task's next phase boundary)."""
    return respond(_indexing().pause(tenant_id(), dataset_id, document_id))


@documents.put("/datasets/<dataset_id>/documents/<document_id>/resume")
@documented(tags=_TAGS, security=TENANT, ok=(200, DocumentView), errors=(404, 409))
def resume_document(dataset_id: str, document_id: str) -> tuple[Response, int]:
    """Resume a paused document: it is indexed again."""
    return respond(_indexing().resume(tenant_id(), dataset_id, document_id))


@documents.put("/datasets/<dataset_id>/documents/<document_id>/enable")
@documented(tags=_TAGS, security=TENANT, ok=(200, DocumentView), errors=(404,))
def enable_document(dataset_id: str, document_id: str) -> tuple[Response, int]:
    """Add the document to the dataset's index (its segments become searchable again)."""
    return respond(_indexing().set_enabled(tenant_id(), dataset_id, document_id, True))


@documents.put("/datasets/<dataset_id>/documents/<document_id>/disable")
@documented(tags=_TAGS, security=TENANT, ok=(200, DocumentView), errors=(404,))
def disable_document(dataset_id: str, document_id: str) -> tuple[Response, int]:
    """Remove the document from the dataset's index (its segments stay, unsearchable)."""
    return respond(_indexing().set_enabled(tenant_id(), dataset_id, document_id, False))


@documents.get("/datasets/<dataset_id>/documents/<document_id>/status-log")
@documented(tags=_TAGS, security=TENANT, query=StatusLogQuery, ok=(200, StatusLog), errors=(404,))
def document_status_log(dataset_id: str, document_id: str) -> tuple[Response, int]:
    """The document's status changes, oldest first, with the reason and time spent in each."""
    query = parse_query(StatusLogQuery)
    return respond(_indexing().status_log(tenant_id(), dataset_id, document_id, query))
