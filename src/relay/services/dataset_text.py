"""Document text for indexing: extraction, cleaning and splitting into segments.

Pure functions (no IO), one per indexing phase, so that the indexing task stays a thin loop of
database steps around them and the text rules are tested on their own:

- ``extract_text`` (parsing): the words a reader sees, not the markup. Plain text as is;
  Markdown without its syntax (the text of headings, lists, quotes, tables and code is kept);
  HTML without ``script``/``style``/``noscript``/``head``/``template``/``svg`` content, entities
  decoded. Page breaks (form feeds, thematic breaks) become paragraph breaks, so a multi-page
  document reads as consecutive paragraphs.
- ``clean_text`` (cleaning): control and zero-width characters removed, Unicode spaces made
  plain, whitespace normalised; optionally URLs and e-mail addresses removed.
- ``split_text`` (splitting): chunks at a separator, packed up to a maximum length, with overlap.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from enum import StrEnum
from html.parser import HTMLParser

MAX_SEGMENT_CHARS = 500
SEGMENT_OVERLAP = 50
DEFAULT_SEPARATOR = "\n\n"


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
    """The readable text of ``content``: markup removed, paragraphs (and pages) kept apart."""
    if text_format is TextFormat.HTML:
        content = html_to_text(content)
    elif text_format is TextFormat.MARKDOWN:
        content = markdown_to_text(content)
    return _normalise(content.replace("\f", "\n\n"))


# --- HTML ----------------------------------------------------------------------------------------


class _HtmlText(HTMLParser):
    """Visible text; block elements become paragraph breaks; non-content elements are dropped."""

    _SKIP = frozenset({"script", "style", "head", "template", "noscript", "svg"})
    _BLOCK = frozenset(
        {"p", "div", "br", "li", "tr", "section", "article", "blockquote", "pre", "table", "ul"}
        | {"ol", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "header", "footer", "main", "nav"}
        | {"dt", "dd", "figcaption", "aside", "title"}
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
        elif tag in {"td", "th"}:
            self.parts.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._BLOCK:  # <br/>, <hr/>: a break, never the start of a skipped element
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
    (re.compile(r"<!--.*?-->", re.S), ""),  # comments (page markers and the like)
    (re.compile(r"^[ \t]*(```|~~~).*$", re.M), ""),  # code fences (the code stays)
    (re.compile(r"^[ \t]{0,3}([-*_])([ \t]*\1){2,}[ \t]*$", re.M), "\n"),  # rules, page breaks
    (re.compile(r"^[ \t]{0,3}(=+|-+)[ \t]*$", re.M), ""),  # setext heading underlines
    (re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+(.*?)[ \t]*#*[ \t]*$", re.M), r"\1"),  # ATX headings
    (re.compile(r"^[ \t]{0,3}>[ \t]?", re.M), ""),  # block quotes
    (re.compile(r"^[ \t]*(?:[-*+]|\d+[.)])[ \t]+(?:\[[ xX]\][ \t]+)?", re.M), ""),  # list items
    # table delimiter rows (with their line break, so that the rows stay one paragraph)
    (
        re.compile(r"^[ \t]*\|?[ \t]*:?-{3,}:?[ \t]*(\|[ \t]*:?-{3,}:?[ \t]*)*\|?[ \t]*\n?", re.M),
        "",
    ),
    (re.compile(r"^[ \t]*\|(.*?)\|?[ \t]*$", re.M), r"\1"),  # table rows: outer pipes
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
    (re.compile(r"[ \t]+\|[ \t]+"), " "),  # table cells
)


def markdown_to_text(markdown: str) -> str:
    """Markdown with its markup removed (headings, emphasis, links, lists, quotes, fences)."""
    for pattern, replacement in (*_MD_LINE_RULES, *_MD_INLINE_RULES):
        markdown = pattern.sub(replacement, markdown)
    return markdown


# --- cleaning ------------------------------------------------------------------------------------

# C0/C1 controls except tab and newlines (form feed is a page break, handled by extraction),
# zero-width characters and the byte-order mark.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f\u200b-\u200d\u2060\ufeff\ufffe\uffff]")
_UNICODE_SPACE = re.compile(r"[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]")
_UNICODE_BREAK = re.compile(r"[\u2028\u2029\x0c]")
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_URL = re.compile(r"\b(?:https?|ftp)://[^\s<>\"')\]]+|\bwww\.[^\s<>\"')\]]+", re.I)


def clean_text(text: str, *, remove_urls_emails: bool = False) -> str:
    """``text`` without control characters, with plain whitespace; URLs and e-mails optionally
    removed (addresses first, so that ``user@host`` never leaves a stray ``user@``)."""
    text = _CONTROL.sub("", text)
    text = _UNICODE_SPACE.sub(" ", text)
    text = _UNICODE_BREAK.sub("\n\n", text)
    if remove_urls_emails:
        text = _EMAIL.sub("", text)
        text = _URL.sub("", text)
    return _normalise(text)


_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


def _normalise(text: str) -> str:
    """Lines trimmed and their inner whitespace collapsed; paragraphs one blank line apart."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    paragraphs = []
    for block in _PARAGRAPH_BREAK.split(text):
        lines = (re.sub(r"[^\S\n]+", " ", line).strip() for line in block.split("\n"))
        paragraph = "\n".join(line for line in lines if line)
        if paragraph:
            paragraphs.append(paragraph)
    return "\n\n".join(paragraphs)


# --- splitting -----------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?;\u3002\uff01\uff1f\uff1b])\s+")
# Where a chunk that is too long is cut, best first: paragraphs, lines, sentences, words.
_FALLBACKS: tuple[str | re.Pattern[str], ...] = ("\n\n", "\n", _SENTENCE_END, " ")


def split_text(
    text: str,
    max_chars: int = MAX_SEGMENT_CHARS,
    overlap: int = SEGMENT_OVERLAP,
    *,
    separator: str = DEFAULT_SEPARATOR,
) -> list[str]:
    """Split ``text`` into segments of at most ``max_chars`` characters.

    The text is cut at every ``separator`` and the chunks are packed together (joined by the
    separator) while they fit. A chunk too long for a segment is cut at paragraph breaks, then
    line breaks, then sentence ends, then between words, and only a word longer than a segment
    is cut inside. Each segment after the first starts with the last ``overlap`` characters
    (whole words) of the one before, so a passage cut at a boundary is found from either side.
    """
    if max_chars < 2 or not 0 <= overlap < max_chars // 2:
        raise ValueError("need max_chars >= 2 and 0 <= overlap < max_chars / 2")
    if not separator:
        raise ValueError("the separator must not be empty")
    budget = max_chars - overlap - 1 if overlap else max_chars  # room left after the overlap
    segments: list[str] = []
    current = ""
    for joiner, piece in _pieces(_normalise(text), separator, budget):
        if not current:
            current = piece
        elif len(current) + len(joiner) + len(piece) <= max_chars:
            current += joiner + piece
        else:
            segments.append(current)
            tail = _tail(current, overlap)
            current = f"{tail} {piece}" if tail else piece
    if current:
        segments.append(current)
    return segments


def _pieces(text: str, separator: str, budget: int) -> Iterator[tuple[str, str]]:
    """(joiner, piece): every piece at most ``budget`` characters, with what joins it to the
    piece before (the separator between chunks, the cut's own separator inside a chunk)."""
    for chunk in text.split(separator):
        yield from _cut(chunk.strip(), _FALLBACKS, budget, separator)


def _cut(
    text: str, levels: tuple[str | re.Pattern[str], ...], budget: int, joiner: str
) -> Iterator[tuple[str, str]]:
    if not text:
        return
    if len(text) <= budget:
        yield joiner, text
        return
    if not levels:  # one enormous word: cut anywhere, the pieces rejoin without a space
        for start in range(0, len(text), budget):
            yield (joiner if start == 0 else ""), text[start : start + budget]
        return
    level, rest = levels[0], levels[1:]
    parts = level.split(text) if isinstance(level, re.Pattern) else text.split(level)
    inner = " " if isinstance(level, re.Pattern) else level
    first = True
    for part in parts:
        part = part.strip()
        if part:
            yield from _cut(part, rest, budget, joiner if first else inner)
            first = False


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
