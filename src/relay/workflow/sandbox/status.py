"""What the sandbox self-check looks for, and its result (the check itself is
``relay.workflow.nodes.sandbox.sandbox_status``, cached, for nodes and /health).

The check starts a real sandbox and looks from inside: it must run as nobody in a read-only
root, without /etc/shadow or /proc, unable to open an AF_INET socket or fork. A passing check
is kept for the life of the process; a failing one is retried after ``RETRY_AFTER`` seconds
(an operator may install bubblewrap meanwhile).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from typing import Any

RETRY_AFTER = 30.0
UNSAFE_LOCAL = "unsafe-local"

PROBE = """
def main():
    import os, socket
    facts = {"uid": os.getuid(), "root_writable": os.access("/", os.W_OK)}
    facts["shadow"] = os.path.exists("/etc/shadow")
    facts["proc"] = os.path.exists("/proc/sys")
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
        facts["inet"] = True
    except PermissionError:
        facts["inet"] = False
    try:
        pid = os.fork()
    except PermissionError:
        facts["fork"] = False
    else:
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        facts["fork"] = True
    return facts
"""
EXPECTED = {
    "uid": 65534,
    "root_writable": False,
    "shadow": False,
    "proc": False,
    "inet": False,
    "fork": False,
}


@dataclass(frozen=True)
class SandboxStatus:
    """ok: code nodes can run in ``mode``; otherwise ``reason`` says why they refuse."""

    ok: bool
    mode: str
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def refusal(self) -> str:
        """The error a code node reports when the sandbox is not available."""
        return (
            f"code sandbox unavailable: {self.reason}. Install bubblewrap (apt-get install "
            "bubblewrap), or set RELAY_WORKFLOW_CODE_SANDBOX=unsafe-local on a development "
            "machine to run code without isolation"
        )


def bwrap_version(path: str) -> str:
    """What ``bwrap --version`` prints (``unknown`` when it cannot tell)."""
    try:
        done = subprocess.run([path, "--version"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.decode(errors="replace").strip() or "unknown"
