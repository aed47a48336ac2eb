"""Document text for indexing: extraction from text, Markdown or HTML, and splitting into segments.

Pure functions (no IO) so that the indexing task stays a thin loop of database steps around them
and the text rules are tested on their own. Extraction is deliberately minimal: enough that the
segments hold the words a reader sees, not the markup.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from enum import StrEnum
from html.parser import HTMLParser

MAX_SEGMENT_CHARS = 500
SEGMENT_OVERLAP = 50


class TextFormat(StrEnum):
    """How a document's stored content is written."""

    TEXT = "text"
    MARKDOWN = "markdown"
    HTML = "html"


_EXTENSIONS = {
    ".md": TextFormat.MARKDOWN,
    ".markdown": TextFormat.MARKDOWN,
    ".html": TextFormat.HTML,
    ".htm": TextFormat.HTML,
}


def detect_format(name: str, content: str) -> TextFormat:
    """The format by file extension, else HTML when the content is an HTML page, else text."""
    lowered = name.lower()
    for extension, text_format in _EXTENSIONS.items():
        if lowered.endswith(extension):
            return text_format
    head = content.lstrip()[:100].lower()
    if head.startswith(("<!doctype html", "<html")):
        return TextFormat.HTML
    return TextFormat.TEXT


def extract_text(content: str, text_format: TextFormat) -> str:
    """The readable text of ``content``: whitespace-normalised, paragraphs kept apart."""
    if text_format is TextFormat.HTML:
        content = html_to_text(content)
    elif text_format is TextFormat.MARKDOWN:
        content = markdown_to_text(content)
    return _normalise(content)


# --- HTML ----------------------------------------------------------------------------------------


class _HtmlText(HTMLParser):
    """Visible text; block elements become paragraph breaks; script and style are dropped."""

    _SKIP = frozenset({"script", "style", "head", "template", "noscript"})
    _BLOCK = frozenset(
        {"p", "div", "br", "li", "tr", "section", "article", "blockquote", "pre", "table", "ul"}
        | {"ol", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "header", "footer", "main", "nav"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCK:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self._BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """The visible text of an HTML document (stdlib ``html.parser``, entities decoded)."""
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    return "".join(parser.parts)


# --- Markdown ------------------------------------------------------------------------------------

_MD_LINE_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^[ \t]*(```|~~~).*$", re.M), ""),  # code fences (the code stays)
    (re.compile(r"^[ \t]{0,3}([-*_])([ \t]*\1){2,}[ \t]*$", re.M), ""),  # horizontal rules
    (re.compile(r"^[ \t]{0,3}(=+|-+)[ \t]*$", re.M), ""),  # setext heading underlines
    (re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+(.*?)[ \t]*#*[ \t]*$", re.M), r"\1"),  # ATX headings
    (re.compile(r"^[ \t]{0,3}>[ \t]?", re.M), ""),  # block quotes
    (re.compile(r"^[ \t]*(?:[-*+]|\d+[.)])[ \t]+", re.M), ""),  # list markers
)
_MD_INLINE_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),  # images: alt text
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # inline links: link text
    (re.compile(r"\[([^\]]+)\]\[[^\]]*\]"), r"\1"),  # reference links
    (re.compile(r"^[ \t]{0,3}\[[^\]]+\]:[ \t]+\S+.*$", re.M), ""),  # link definitions
    (re.compile(r"`([^`]*)`"), r"\1"),  # inline code
    (re.compile(r"(?<!\w)(\*\*|__)(?=\S)(.+?)(?<=\S)\1(?!\w)"), r"\2"),  # strong
    (re.compile(r"(?<!\w)([*_])(?=\S)(.+?)(?<=\S)\1(?!\w)"), r"\2"),  # emphasis
    (re.compile(r"~~(?=\S)(.+?)(?<=\S)~~"), r"\1"),  # strikethrough
)


def markdown_to_text(markdown: str) -> str:
    """Markdown with its markup removed (headings, emphasis, links, lists, quotes, fences)."""
    for pattern, replacement in (*_MD_LINE_RULES, *_MD_INLINE_RULES):
        markdown = pattern.sub(replacement, markdown)
    return markdown


# --- splitting -----------------------------------------------------------------------------------

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?\u3002\uff01\uff1f])\s+")


def _normalise(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    paragraphs = []
    for block in _PARAGRAPH_BREAK.split(text):
        lines = (re.sub(r"[ \t\f\v\u00a0]+", " ", line).strip() for line in block.split("\n"))
        paragraph = "\n".join(line for line in lines if line)
        if paragraph:
            paragraphs.append(paragraph)
    return "\n\n".join(paragraphs)


def split_text(
    text: str, max_chars: int = MAX_SEGMENT_CHARS, overlap: int = SEGMENT_OVERLAP
) -> list[str]:
    """Split ``text`` into segments of at most ``max_chars`` characters.

    Paragraphs are packed together while they fit; a longer paragraph is cut at sentence ends,
    then at word boundaries, then (one enormous word) anywhere. Each segment after the first
    starts with the last ``overlap`` characters (whole words) of the one before, so a sentence cut
    at a boundary can still be found from either side.
    """
    if max_chars < 2 or not 0 <= overlap < max_chars // 2:
        raise ValueError("need max_chars >= 2 and 0 <= overlap < max_chars / 2")
    budget = max_chars - overlap - 1 if overlap else max_chars  # room left after the overlap
    segments: list[str] = []
    current = ""
    for separator, piece in _pieces(_normalise(text), budget):
        if not current:
            current = piece
        elif len(current) + len(separator) + len(piece) <= max_chars:
            current += separator + piece
        else:
            segments.append(current)
            tail = _tail(current, overlap)
            current = f"{tail} {piece}" if tail else piece
    if current:
        segments.append(current)
    return segments


def _pieces(text: str, budget: int) -> Iterator[tuple[str, str]]:
    """(separator, piece) with every piece at most ``budget`` characters."""
    for paragraph in text.split("\n\n"):
        separator = "\n\n"
        for sentence in _SENTENCE_END.split(paragraph):
            for piece in _wrap(sentence, budget):
                yield separator, piece
                separator = " "


def _wrap(sentence: str, budget: int) -> Iterator[str]:
    if len(sentence) <= budget:
        yield sentence
        return
    line = ""
    for word in sentence.split():
        while len(word) > budget:  # no boundary to cut at: cut anywhere
            if line:
                yield line
                line = ""
            yield word[:budget]
            word = word[budget:]
        if not line:
            line = word
        elif len(line) + 1 + len(word) <= budget:
            line = f"{line} {word}"
        else:
            yield line
            line = word
    if line:
        yield line


def _tail(segment: str, overlap: int) -> str:
    """The last ``overlap`` characters of ``segment``, starting at a word boundary if any."""
    if overlap <= 0:
        return ""
    tail = segment[-overlap:]
    if len(segment) > overlap and not segment[-overlap - 1].isspace():
        parts = re.split(r"\s", tail, maxsplit=1)
        if len(parts) == 2:
            tail = parts[1]
    return tail.strip()


def word_count(text: str) -> int:
    """Words separated by whitespace."""
    return len(text.split())
