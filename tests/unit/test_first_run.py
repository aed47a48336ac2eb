from __future__ import annotations

import stat
from pathlib import Path

from relay.first_run import ensure_admin_token, next_steps


def test_the_token_is_generated_once_private_and_reused(tmp_path: Path) -> None:
    first = ensure_admin_token(tmp_path / "var")
    assert first.generated
    assert len(first.value) >= 40
    assert stat.S_IMODE(first.path.stat().st_mode) == 0o600
    again = ensure_admin_token(tmp_path / "var")
    assert (again.value, again.generated) == (first.value, False)


def test_an_empty_token_file_gets_a_token(tmp_path: Path) -> None:
    (tmp_path / "admin-token").write_text("")
    token = ensure_admin_token(tmp_path)
    assert token.generated
    assert (tmp_path / "admin-token").read_text().strip() == token.value


def test_next_steps_walk_tenant_import_and_run(tmp_path: Path) -> None:
    text = next_steps("http://127.0.0.1:5001", tmp_path / "admin-token")
    assert text.index("/v1/tenants") < text.index("/v1/apps/import") < text.index("/workflows/run")
    assert f"$(cat {tmp_path / 'admin-token'})" in text
