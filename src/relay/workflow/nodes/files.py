"""Files as workflow values: plain dicts in Dify's shape, and the attributes conditions read.

A file in the pool is the dict Dify serialises (``type``, ``transfer_method``, ``url`` or
``remote_url``, ``filename``, ``extension``, ``mime_type``, ``size``); inputs sent over the API
carry fewer keys, so each attribute is derived from what is there. Local text may travel inline as
``content`` (relay's own addition for tests and demos without file storage).
"""

from __future__ import annotations

import base64
import mimetypes
import posixpath
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

FILE_ATTRIBUTES = ("type", "size", "name", "extension", "mime_type", "transfer_method", "url")

_TYPE_BY_MIME_PREFIX = {"image/": "image", "audio/": "audio", "video/": "video"}
_DOCUMENT_EXTENSIONS = frozenset(
    {".txt", ".md", ".markdown", ".mdx", ".html", ".htm", ".csv", ".pdf", ".docx", ".xlsx",
     ".xls", ".pptx", ".json", ".xml", ".eml", ".msg", ".epub", ".vtt", ".properties", ".yaml",
     ".yml"}
)  # fmt: skip


def is_file(value: Any) -> bool:
    """Whether ``value`` looks like a file object (a dict with a file's identifying keys)."""
    return isinstance(value, Mapping) and any(
        key in value for key in ("transfer_method", "upload_file_id", "remote_url", "filename")
    )


def file_name(file: Mapping[str, Any]) -> str:
    """The file's name, from its fields or the last segment of its URL."""
    for key in ("filename", "name"):
        if file.get(key):
            return str(file[key])
    url = file_url(file)
    return posixpath.basename(urlparse(url).path) if url else ""


def file_url(file: Mapping[str, Any]) -> str:
    """Where the file can be fetched (remote URL or signed URL); '' for inline files."""
    return str(file.get("url") or file.get("remote_url") or "")


def file_extension(file: Mapping[str, Any]) -> str:
    """The extension with its dot, lower case ('.pdf'); '' when unknown."""
    extension = str(file.get("extension") or "")
    if not extension:
        extension = posixpath.splitext(file_name(file))[1]
    if extension and not extension.startswith("."):
        extension = "." + extension
    return extension.lower()


def file_mime_type(file: Mapping[str, Any]) -> str:
    """The MIME type, guessed from the extension when the file does not say."""
    if file.get("mime_type"):
        return str(file["mime_type"])
    guessed, _ = mimetypes.guess_type("x" + file_extension(file))
    return guessed or ""


def file_type(file: Mapping[str, Any]) -> str:
    """Dify's file type: image, document, audio, video or custom."""
    if file.get("type"):
        return str(file["type"])
    mime = file_mime_type(file)
    for prefix, kind in _TYPE_BY_MIME_PREFIX.items():
        if mime.startswith(prefix):
            return kind
    return "document" if file_extension(file) in _DOCUMENT_EXTENSIONS else "custom"


def file_attribute(file: Mapping[str, Any], key: str) -> Any:
    """One of :data:`FILE_ATTRIBUTES` (KeyError for others; validated at import)."""
    if key == "type":
        return file_type(file)
    if key == "size":
        return file.get("size")
    if key == "name":
        return file_name(file)
    if key == "extension":
        return file_extension(file)
    if key == "mime_type":
        return file_mime_type(file)
    if key == "transfer_method":
        return file.get("transfer_method") or ("remote_url" if file_url(file) else "local_file")
    if key == "url":
        return file_url(file)
    raise KeyError(key)


def inline_bytes(file: Mapping[str, Any]) -> bytes | None:
    """Content carried inside the file object (``content`` text or ``content_base64``)."""
    if isinstance(file.get("content"), str):
        return str(file["content"]).encode()
    if isinstance(file.get("content_base64"), str):
        return base64.b64decode(str(file["content_base64"]))
    return None
