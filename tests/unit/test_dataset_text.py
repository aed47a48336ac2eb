"""Text extraction and splitting for document indexing (pure functions)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.services.dataset_text import (
    TextFormat,
    clean_text,
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


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>Hello <b>world</b></p>", "Hello world"),
        ("<h1>T</h1><p>a</p><p>b</p>", "T\n\na\n\nb"),
        ("<script>x()</script><style>p{}</style><noscript>js</noscript>kept", "kept"),
        ("a &amp; b &lt;c&gt; caf&eacute; &#8212; &#x41;", "a & b <c> café — A"),
        ("<ul><li>one</li><li>two</li></ul>", "one\n\ntwo"),
        ("plain   text\twith  spaces", "plain text with spaces"),
        ("<table><tr><td>a</td><td>b</td></tr></table>", "a b"),
        ("line<br/>break<hr/>rule", "line\n\nbreak\n\nrule"),
        ("<svg><text>icon</text></svg><template><p>t</p></template>seen", "seen"),
    ],
)
def test_html_cases(html: str, text: str) -> None:
    assert extract_text(html, TextFormat.HTML) == text


def test_markdown_pages_lists_tables_and_code_keep_their_text() -> None:
    markdown = (
        "# Page one\n\nFirst page text.\n\n<!-- page 2 -->\n\n---\n\n## Page two\n\n"
        "- [x] done item\n- [ ] open item\n\n| Key | Value |\n|-----|:-----:|\n| a | 1 |\n\n"
        "    indented code stays\n\n\fThird page after a form feed."
    )
    assert extract_text(markdown, TextFormat.MARKDOWN) == (
        "Page one\n\nFirst page text.\n\nPage two\n\ndone item\nopen item\n\nKey Value\na 1\n\n"
        "indented code stays\n\nThird page after a form feed."
    )


def test_cleaning_removes_control_characters_and_odd_spaces() -> None:
    dirty = "a\x00b\x07c\u200bd\ufeff e\u00a0f\u3000g\u2028h\r\n\r\n\ti\x85"
    assert clean_text(dirty) == "abcd e f g\n\nh\n\ni"


def test_cleaning_removes_urls_and_emails_only_when_asked() -> None:
    text = "Write to ops.team+oncall@example.co.uk or see https://example.com/a?b=1 (www.x.org)."
    assert clean_text(text) == text
    assert clean_text(text, remove_urls_emails=True) == "Write to or see ()."


def test_the_separator_is_configurable() -> None:
    text = "one\ntwo\nthree"
    assert split_text(text, max_chars=8, overlap=0, separator="\n") == ["one\ntwo", "three"]
    assert split_text("a###b###c", max_chars=100, overlap=0, separator="###") == ["a###b###c"]
    long = "x" * 30 + "###" + "y" * 30
    assert split_text(long, max_chars=40, overlap=0, separator="###") == ["x" * 30, "y" * 30]
    with pytest.raises(ValueError, match="separator"):
        split_text("x", separator="")


def test_a_long_chunk_is_cut_at_lines_then_sentences_then_words() -> None:
    lines = "\n".join(f"line {i} " + "w" * 20 for i in range(6))
    segments = split_text(lines, max_chars=70, overlap=0)
    assert all(len(s) <= 70 for s in segments)
    assert all(s.startswith("line") for s in segments), "cut at line breaks"
    sentence = "Alpha beta gamma. Delta epsilon zeta. Eta theta iota."
    assert split_text(sentence, max_chars=40, overlap=0) == [
        "Alpha beta gamma. Delta epsilon zeta.",
        "Eta theta iota.",
    ]
    words = "word " * 30
    assert all(not s.endswith("wor") for s in split_text(words, max_chars=50, overlap=10))
