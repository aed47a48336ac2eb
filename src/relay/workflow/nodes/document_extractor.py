"""document-extractor: the text of uploaded files (plain text, Markdown, HTML, CSV, JSON, PDF,
DOCX); outputs ``text``, a string for one file and a list of strings for an array of files.

File content comes inline (``content`` / ``content_base64``) or from the file's URL, fetched with
the http-request node's limits and its guard against private addresses. CSV becomes a Markdown
table, as Dify renders it; PDF pages and DOCX paragraphs and tables are read with pypdf and
python-docx.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from html.parser import HTMLParser
from typing import Any

import docx
import httpx
from docx.opc.exceptions import PackageNotFoundError
from pydantic import BaseModel, ConfigDict
from pypdf import PdfReader
from pypdf.errors import PdfReadError

from relay.workflow.config import HttpRequestConfig
from relay.workflow.errors import NodeError
from relay.workflow.graph import NodeConfig
from relay.workflow.nodes.base import Node, NodeContext, NodeRun, NodeRunResult, parse_data
from relay.workflow.nodes.files import (
    file_extension,
    file_mime_type,
    file_name,
    file_url,
    inline_bytes,
)
from relay.workflow.ssrf import check_address
from relay.workflow.stop import StopToken
from relay.workflow.variables import Selector, as_selector

_TEXT = frozenset({".txt", ".md", ".markdown", ".mdx", ".text", ".log", ".yaml", ".yml", ".xml"})
_HTML = frozenset({".html", ".htm"})
_BY_MIME = {
    "text/plain": ".txt",
    "text/markdown": ".md",
    "text/html": ".html",
    "text/csv": ".csv",
    "application/json": ".json",
    "application/pdf": ".pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
}


class DocumentExtractorData(BaseModel):
    """document-extractor node data."""

    model_config = ConfigDict(extra="ignore")

    variable_selector: list[str]
    is_array_file: bool = False


class DocumentExtractorNode(Node):
    """Outputs ``text``."""

    node_type = "document-extractor"

    def __init__(self, config: NodeConfig) -> None:
        super().__init__(config)
        self.data = parse_data(DocumentExtractorData, config)

    def selectors(self) -> list[Selector]:
        return [as_selector(self.data.variable_selector)]

    def declared_outputs(self) -> list[str]:
        return ["text"]

    def run(self, ctx: NodeContext) -> NodeRun:
        value = ctx.pool.get(self.data.variable_selector)
        shown = ".".join(self.data.variable_selector)
        if value is None:
            raise NodeError(f"document-extractor found no file at '{shown}'")
        if isinstance(value, list):
            texts = [self._one(f, shown, ctx) for f in value]
            text: str | list[str] = texts
        elif isinstance(value, Mapping):
            text = self._one(value, shown, ctx)
        else:
            raise NodeError(
                f"document-extractor needs a file at '{shown}', got {type(value).__name__}"
            )
        return NodeRunResult(outputs={"text": text}, inputs={"variable_selector": shown})
        yield  # a generator, like every node

    def _one(self, file: Any, shown: str, ctx: NodeContext) -> str:
        if not isinstance(file, Mapping):
            raise NodeError(f"document-extractor needs files at '{shown}'")
        data = inline_bytes(file)
        if data is None:
            url = file_url(file)
            if not url:
                raise NodeError(f"file '{file_name(file)}' has neither content nor a URL")
            data = fetch(url, ctx.services.http, ctx.stop)
        return extract_text(data, file_extension(file), file_mime_type(file), file_name(file))


def fetch(url: str, config: HttpRequestConfig, stop: StopToken) -> bytes:
    """Download a file with the http-request node's size limit and address guard."""
    if not url.startswith(("http://", "https://")):
        raise NodeError(f"file URL must start with http:// or https://, got {url!r}")

    def guard(outgoing: httpx.Request) -> None:
        check_address(outgoing.url.host, config)

    body = bytearray()
    try:
        with (
            httpx.Client(
                timeout=httpx.Timeout(config.read_timeout, connect=config.connect_timeout),
                verify=config.verify_ssl,
                follow_redirects=True,
                event_hooks={"request": [guard]},
            ) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise NodeError(f"fetching {url} returned HTTP {response.status_code}")
            for piece in response.iter_bytes():
                stop.raise_if_set()
                body.extend(piece)
                if len(body) > config.max_response_bytes:
                    raise NodeError(f"file is larger than {config.max_response_bytes} bytes")
    except httpx.HTTPError as exc:
        raise NodeError(f"fetching {url} failed: {exc}") from exc
    return bytes(body)


def extract_text(data: bytes, extension: str, mime_type: str = "", name: str = "") -> str:
    """The text of a file's bytes, chosen by extension (then MIME type)."""
    kind = extension or _BY_MIME.get(mime_type.split(";")[0].strip(), "")
    shown = name or "file"
    if kind in _TEXT or (not kind and mime_type.startswith("text/")):
        return _decode(data)
    if kind in _HTML:
        return html_text(_decode(data))
    if kind == ".csv":
        return csv_markdown(_decode(data))
    if kind == ".json":
        try:
            return json.dumps(json.loads(_decode(data)), ensure_ascii=False, indent=2)
        except json.JSONDecodeError as exc:
            raise NodeError(f"{shown} is not valid JSON: {exc}") from exc
    if kind == ".pdf":
        return _pdf(data, shown)
    if kind == ".docx":
        return _docx(data, shown)
    raise NodeError(
        f"document-extractor cannot read {shown} (type {kind or mime_type or 'unknown'}); "
        "it reads text, Markdown, HTML, CSV, JSON, PDF and DOCX"
    )


def _decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "utf-16"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


class _HTMLText(HTMLParser):
    _SKIP = frozenset({"script", "style", "head", "template", "noscript"})
    _BLOCK = frozenset(
        {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article",
         "pre", "blockquote", "table", "ul", "ol"}
    )  # fmt: skip

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skipping:
            self._skipping -= 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_text(html: str) -> str:
    """Visible text of an HTML page, one block per line."""
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line)


def csv_markdown(text: str) -> str:
    """A CSV as a Markdown table (the first row is the header)."""
    rows = [row for row in csv.reader(io.StringIO(text)) if row]
    if not rows:
        return ""
    width = max(len(row) for row in rows)

    def line(row: list[str]) -> str:
        cells = [cell.replace("|", "\\|").replace("\n", " ") for cell in row]
        return "| " + " | ".join(cells + [""] * (width - len(cells))) + " |"

    return "\n".join([line(rows[0]), "| " + " | ".join(["---"] * width) + " |"] + [
        line(row) for row in rows[1:]
    ])  # fmt: skip


def _pdf(data: bytes, shown: str) -> str:
    try:
        reader = PdfReader(io.BytesIO(data))
        return "\n".join((page.extract_text() or "").strip() for page in reader.pages).strip()
    except (PdfReadError, ValueError, KeyError) as exc:
        raise NodeError(f"{shown} is not a readable PDF: {exc}") from exc


def _docx(data: bytes, shown: str) -> str:
    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, ValueError, KeyError) as exc:
        raise NodeError(f"{shown} is not a readable DOCX: {exc}") from exc
    parts = [p.text for p in document.paragraphs if p.text.strip()]
    for table in document.tables:
        rows = [[cell.text for cell in row.cells] for row in table.rows]
        if rows:
            buffer = io.StringIO()
            csv.writer(buffer).writerows(rows)
            parts.append(csv_markdown(buffer.getvalue()))
    return "\n".join(parts)
