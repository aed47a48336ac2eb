"""Whether code nodes can run isolated on this host: a self-check, cached, for nodes and /health.

The check starts a real sandbox and looks from inside: it must run as nobody in a read-only
root, without /etc/shadow or /proc, unable to open an AF_INET socket or fork. A passing check
is kept for the life of the process; a failing one is retried after ``RETRY_AFTER`` seconds
(an operator may install bubblewrap meanwhile).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

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


_lock = threading.Lock()
_cache: dict[str, tuple[SandboxStatus, float]] = {}


def sandbox_status(mode: str = "bubblewrap", bwrap: str = "bwrap") -> SandboxStatus:
    """The sandbox this host offers for ``mode`` (runs the self-check once, then cached)."""
    if mode == UNSAFE_LOCAL:
        return SandboxStatus(
            True, mode, details={"warning": "code nodes run WITHOUT isolation (unsafe-local)"}
        )
    with _lock:
        cached = _cache.get(bwrap)
        if cached is not None and (cached[0].ok or time.monotonic() - cached[1] < RETRY_AFTER):
            return cached[0]
        status = _self_check(bwrap)
        _cache[bwrap] = (status, time.monotonic())
    if not status.ok:
        log.error("code sandbox unavailable: %s", status.reason)
    return status


def forget() -> None:
    """Drop cached results (tests, or after installing bubblewrap)."""
    with _lock:
        _cache.clear()


def _self_check(bwrap: str) -> SandboxStatus:
    # Imported here: the runner imports the status module's users, not the other way round.
    from relay.workflow.config import CodeSandboxConfig
    from relay.workflow.errors import NodeError
    from relay.workflow.nodes.sandbox import CodeSandbox
    from relay.workflow.stop import StopToken

    path = shutil.which(bwrap)
    if path is None:
        return SandboxStatus(False, "bubblewrap", f"the bubblewrap executable {bwrap!r} is missing")
    details: dict[str, Any] = {"bwrap": path, "version": _version(path)}
    config = CodeSandboxConfig(bwrap=path, allowed_packages=(), time_limit=20.0)
    try:
        result = CodeSandbox(config).run_isolated(PROBE, {}, StopToken())
    except NodeError as exc:
        return SandboxStatus(False, "bubblewrap", f"the self-check failed: {exc}", details)
    facts = {key: result.result.get(key) for key in EXPECTED}
    if facts != EXPECTED:
        return SandboxStatus(
            False, "bubblewrap", f"the self-check found the sandbox open: {facts}", details
        )
    return SandboxStatus(True, "bubblewrap", None, details)


def _version(path: str) -> str:
    try:
        done = subprocess.run([path, "--version"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.decode(errors="replace").strip() or "unknown"
