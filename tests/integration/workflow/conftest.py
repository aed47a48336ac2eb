"""Loopback servers and settings shared by the workflow integration tests."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator

import pytest

from .servers import ApiHandler, LocalServer, OpenAIServer


@pytest.fixture(scope="module")
def api_server() -> Iterator[LocalServer]:
    with LocalServer(ApiHandler) as server:
        yield server


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    server = OpenAIServer()
    with server:
        yield server


def require_sandbox_packages(*names: str) -> None:
    """Packages a DSL's code imports must be installable in the sandbox (CI fails, local skips)."""
    missing = [name for name in names if importlib.util.find_spec(name) is None]
    if not missing:
        return
    message = f"code sandbox packages missing: {', '.join(missing)} (install relay[sandbox])"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def require_sandbox() -> None:
    """Code nodes need bubblewrap here (CI installs it and fails without; local runs skip)."""
    from relay.workflow.nodes.sandbox import sandbox_status

    status = sandbox_status()
    if status.ok:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"code sandbox unavailable: {status.reason}")
    pytest.skip(f"code sandbox unavailable: {status.reason}")
