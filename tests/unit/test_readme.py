from __future__ import annotations

from pathlib import Path

from relay.cli import settings_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_configuration_table_matches_the_settings() -> None:
    assert settings_table() in README.read_text(), "run `relay config --markdown` into README.md"


def test_readme_shows_the_two_commands() -> None:
    text = README.read_text()
    assert "make up" in text
    assert "make test" in text
