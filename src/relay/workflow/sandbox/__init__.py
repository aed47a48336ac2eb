"""Isolation of tenant code: bubblewrap command lines, seccomp filters, the allowed packages,
the bounded child runner and what the host's self-check expects. The check itself, and the
code sandbox that uses all of this, live in ``relay.workflow.nodes.sandbox``."""

from __future__ import annotations

from relay.workflow.sandbox.status import SandboxStatus

__all__ = ["SandboxStatus"]
