"""Text extraction and splitting for document indexing (pure functions)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.tasks.dataset_text import (
    TextFormat,
    detect_format,
    extract_text,
    html_to_text,
    markdown_to_text,
    split_text,
    word_count,
)


def test_format_by_extension_then_content() -> None:
    assert detect_format("notes.MD", "x") is TextFormat.MARKDOWN
    assert detect_format("page.htm", "x") is TextFormat.HTML
    assert detect_format("upload", "  <!DOCTYPE html><p>x</p>") is TextFormat.HTML
    assert detect_format("a.txt", "<p>just text about tags</p>") is TextFormat.TEXT


def test_html_keeps_visible_text_only() -> None:
    html = (
        "<html><head><title>t</title><style>p{}</style></head><body>"
        "<h1>Title</h1><p>One &amp; two</p><script>alert(1)</script><ul><li>a</li><li>b</li></ul>"
        "</body></html>"
    )
    text = extract_text(html, TextFormat.HTML)
    assert text == "Title\n\nOne & two\n\na\n\nb"
    assert "alert" not in html_to_text(html)


def test_markdown_markup_is_stripped() -> None:
    markdown = (
        "# Heading #\n\nSome **bold**, _em_ and `code` with a [link](http://x) and "
        "![alt text](i.png).\n\n> quoted\n\n- item one\n1. item two\n\n---\n\n"
        "```python\nprint(1)\n```\n\nsnake_case_name stays"
    )
    text = extract_text(markdown, TextFormat.MARKDOWN)
    assert text == (
        "Heading\n\nSome bold, em and code with a link and alt text.\n\nquoted\n\n"
        "item one\nitem two\n\nprint(1)\n\nsnake_case_name stays"
    )
    assert markdown_to_text("Setext\n======").strip() == "Setext"


def test_plain_text_is_normalised() -> None:
    assert extract_text("  a   b \r\n\r\n\n c\t\td  \n", TextFormat.TEXT) == "a b\n\nc d"


def test_short_paragraphs_are_packed_into_one_segment() -> None:
    assert split_text("one\n\ntwo\n\nthree") == ["one\n\ntwo\n\nthree"]


def test_long_text_is_split_with_overlap() -> None:
    sentences = [f"Sentence number {i} says something." for i in range(60)]
    text = " ".join(sentences[:30]) + "\n\n" + " ".join(sentences[30:])
    segments = split_text(text, max_chars=500, overlap=50)
    assert len(segments) > 3
    assert all(len(s) <= 500 for s in segments)
    for before, after in itertools.pairwise(segments):
        # The next segment starts with (whole words of) the end of the previous one.
        head = after.split(" ")[0]
        assert head in before[-60:]
    for sentence in sentences:
        assert any(sentence in s for s in segments), sentence


def test_an_enormous_word_is_cut_anywhere() -> None:
    segments = split_text("x" * 1200, max_chars=500, overlap=0)
    assert [len(s) for s in segments] == [500, 500, 200]


def test_invalid_limits() -> None:
    with pytest.raises(ValueError, match="overlap"):
        split_text("x", max_chars=100, overlap=50)


def test_word_count() -> None:
    assert word_count("one two\nthree\t four") == 4
    assert word_count("") == 0


@given(
    st.lists(
        st.text(alphabet=st.characters(categories=["L", "N", "Zs"]), min_size=0, max_size=300)
        | st.just("\n\n"),
        max_size=30,
    )
)
def test_segments_respect_the_limit_and_keep_every_word(parts: list[str]) -> None:
    text = " ".join(parts)
    segments = split_text(text, max_chars=120, overlap=20)
    assert all(0 < len(s) <= 120 for s in segments)
    words = text.split()
    joined = " ".join(segments)
    for word in words:
        if len(word) <= 99:
            assert word in joined
    if not words:
        assert segments == []
