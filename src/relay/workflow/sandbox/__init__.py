"""Isolation of tenant code: bubblewrap command lines, seccomp filters, the allowed packages,
the bounded child runner and the host's sandbox status."""

from __future__ import annotations

from relay.workflow.sandbox.status import SandboxStatus, sandbox_status

__all__ = ["SandboxStatus", "sandbox_status"]
