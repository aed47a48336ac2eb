"""What ``relay up`` tells a newcomer: the admin token it generated, and the next three steps.

Without ``RELAY_API_ADMIN_TOKEN`` the admin endpoints would be disabled, so a fresh ``relay up``
generates a token into ``<var>/admin-token`` (mode 0600, created exclusively so two starts never
write different tokens) and uses it; later starts read the same file. The token is printed only
when it is generated, with the commands that take a newcomer from nothing to a run.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

TOKEN_FILE = "admin-token"
SECRET_KEY_FILE = "secret-key"
EXAMPLE_APP = "tests/fixtures/dify_dsl/seo-slug-generator.yml"


@dataclass(frozen=True)
class AdminToken:
    """The token in effect and where it came from."""

    value: str
    path: Path
    generated: bool


def ensure_admin_token(var_dir: Path) -> AdminToken:
    """The token in ``var_dir/admin-token``; generated (0600) when the file does not exist."""
    path = var_dir / TOKEN_FILE
    value, generated = _stored_secret(path)
    return AdminToken(value, path, generated=generated)


def ensure_secret_key(var_dir: Path) -> str:
    """The key in ``var_dir/secret-key`` that signs stream tokens and dashboard sessions.

    Generated (0600) on first use, so every API process of one installation (and a restarted
    one) verifies what another signed.
    """
    value, _ = _stored_secret(var_dir / SECRET_KEY_FILE)
    return value


def _stored_secret(path: Path) -> tuple[str, bool]:
    """The secret in ``path`` and whether this call generated it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        existing = path.read_text(encoding="utf-8").strip()
        if existing:
            return existing, False
        # An empty file (a start killed mid-write): write a secret now.
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    os.chmod(path, 0o600)
    return token, True


def next_steps(base_url: str, token_path: Path) -> str:
    """The three commands after the first start: tenant and key, import an app, run it."""
    admin = f'-H "Authorization: Bearer $(cat {_shown(token_path)})"'
    json = "-H 'Content-Type: application/json'"
    return "\n".join(
        [
            "Next steps:",
            "  1. create a tenant and an API key for it:",
            f"     curl -s -X POST {base_url}/v1/tenants {admin} {json} \\",
            """       -d '{"name": "acme", "plan": "sandbox"}'""",
            f"     curl -s -X POST {base_url}/v1/tenants/<tenant id>/api-keys {admin} {json} \\",
            """       -d '{"name": "first key"}'""",
            "  2. import a Dify export and publish it:",
            f"     curl -s -X POST '{base_url}/v1/apps/import?publish=true' "
            '-H "Authorization: Bearer <api key>" \\',
            f"       -H 'Content-Type: application/x-yaml' --data-binary @{EXAMPLE_APP}",
            "  3. run it:",
            f"     curl -s -X POST {base_url}/v1/workflows/run "
            f'-H "Authorization: Bearer <api key>" {json} \\',
            """       -d '{"app_id": "<app id>", "user": "me", "response_mode": "blocking","""
            """ "inputs": {"title": "Hello relay"}}'""",
        ]
    )


def _shown(path: Path) -> str:
    # Relative to the working directory when below it: shorter to copy.
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
