"""The keyword index's tokenizer (pure): what a segment and a query are reduced to."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from relay.services.keyword_index import MAX_KEYWORD_CHARS, STOPWORDS, tokenize


def test_words_are_lowercased_distinct_and_in_order() -> None:
    assert tokenize("Retry the Task, then RETRY the task later") == ["retry", "task", "later"]


def test_short_words_and_stopwords_are_dropped() -> None:
    assert tokenize("a I x is of the to be or an at 42 ok") == ["42", "ok"]
    assert "the" in STOPWORDS


def test_punctuation_and_underscores_separate_words() -> None:
    assert tokenize("backup_path=/var/lib; e-mail: ops@example.com") == [
        "backup", "path", "var", "lib", "mail", "ops", "example", "com",
    ]  # fmt: skip


def test_accented_and_non_latin_words_stay_whole() -> None:
    assert tokenize("Café Zürich Москва αβγ") == ["café", "zürich", "москва", "αβγ"]


def test_cjk_characters_are_single_tokens_without_particles() -> None:
    assert tokenize("知识库的检索") == ["知", "识", "库", "检", "索"]
    assert tokenize("東京の天気です") == ["東", "京", "天", "気", "す"]
    assert tokenize("한국어 검색") == ["한", "국", "어", "검", "색"]
    assert tokenize("relay知识") == ["relay", "知", "识"]


def test_overlong_words_are_not_keywords() -> None:
    assert tokenize("x" * (MAX_KEYWORD_CHARS + 1) + " fine") == ["fine"]
    assert tokenize("y" * MAX_KEYWORD_CHARS) == ["y" * MAX_KEYWORD_CHARS]


@given(st.text(max_size=300))
def test_tokens_fit_the_index(text: str) -> None:
    tokens = tokenize(text)
    assert len(tokens) == len(set(tokens))
    for token in tokens:
        assert 1 <= len(token) <= MAX_KEYWORD_CHARS
        assert token not in STOPWORDS
        assert tokenize(token) == [token], "a token tokenizes to itself"
