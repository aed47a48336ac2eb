"""Runs code node Python in a separate, confined process: a fresh interpreter, JSON in and out.

Two modes (``CodeSandboxConfig.mode``):

- ``bubblewrap`` (the default): the child runs in bubblewrap's namespaces with a read-only
  minimal filesystem view, a private size-bounded tmpfs, no network, all capabilities dropped,
  no_new_privs and a seccomp filter (see ``relay.workflow.sandbox``). When that cannot be set up
  on this host the node refuses to run (``sandbox_status`` says why).
- ``unsafe-local``: a plain child process with rlimits and a clean environment, dropping to
  nobody when relay runs as root. It isolates nothing from a determined tenant: for local
  development only, and it says so in the log each time it runs code.

Both limit CPU time, wall time, address space, file size and output, and allow imports from
the standard library and the allowed packages only.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from functools import cache
from pathlib import Path
from typing import Any

from relay.workflow.config import CodeSandboxConfig
from relay.workflow.errors import NodeError
from relay.workflow.sandbox import bwrap
from relay.workflow.sandbox.packages import not_allowed_hint, package_view
from relay.workflow.sandbox.runner import SandboxResult, Spawn, execute
from relay.workflow.sandbox.seccomp import SeccompUnavailable, base_filter, exec_filter
from relay.workflow.sandbox.status import (
    EXPECTED,
    PROBE,
    RETRY_AFTER,
    UNSAFE_LOCAL,
    SandboxStatus,
    bwrap_version,
)
from relay.workflow.stop import StopToken

__all__ = ["CodeSandbox", "SandboxResult", "sandbox_status"]

log = logging.getLogger(__name__)


@cache
def _child_source() -> str:
    return (Path(__file__).with_name("sandbox_child.py")).read_text(encoding="utf-8")


class CodeSandbox:
    """One child process per call; nothing is shared between calls."""

    def __init__(self, config: CodeSandboxConfig) -> None:
        self.config = config

    def run(self, code: str, inputs: dict[str, Any], stop: StopToken) -> SandboxResult:
        """Run ``main(**inputs)`` from ``code``; raises NodeError on failure or time out."""
        if self.config.mode == UNSAFE_LOCAL:
            return self._run_unsafe(code, inputs, stop)
        status = sandbox_status(self.config.mode, self.config.bwrap)
        if not status.ok:
            raise NodeError(status.refusal())
        return self.run_isolated(code, inputs, stop)

    def _request(self, code: str, inputs: dict[str, Any], **extra: Any) -> bytes:
        config = self.config
        view = package_view(config.allowed_packages)
        try:
            return json.dumps(
                {
                    "code": code,
                    "inputs": inputs,
                    "limits": {
                        "memory_bytes": config.memory_limit_mb * 1024 * 1024,
                        "cpu_seconds": math.ceil(config.time_limit) + 1,
                        "file_bytes": config.max_file_size_mb * 1024 * 1024,
                    },
                    "modules": sorted(view.modules),
                    "hint": not_allowed_hint(view.allowed),
                    **extra,
                },
                ensure_ascii=False,
            ).encode()
        except (TypeError, ValueError) as exc:
            raise NodeError(f"code inputs are not JSON data: {exc}") from exc

    def run_isolated(self, code: str, inputs: dict[str, Any], stop: StopToken) -> SandboxResult:
        """Run in bubblewrap without consulting the status (the self-check itself uses this)."""
        config = self.config
        path = shutil.which(config.bwrap)
        if path is None:
            raise NodeError(f"the bubblewrap executable {config.bwrap!r} is missing")
        try:
            program = base_filter()
            request = self._request(
                code,
                inputs,
                site=bwrap.SITE_DIR,
                exec_filter=base64.b64encode(exec_filter()).decode(),
            )
        except SeccompUnavailable as exc:
            raise NodeError(str(exc)) from exc
        seccomp_fd = os.memfd_create("relay-seccomp")  # close-on-exec; pass_fds hands it on
        try:
            os.write(seccomp_fd, program)
            os.lseek(seccomp_fd, 0, os.SEEK_SET)
            argv = bwrap.command(
                path,
                package_view(config.allowed_packages),
                seccomp_fd,
                config.workdir_size_mb * 1024 * 1024,
                _child_source(),
            )
            spawn = Spawn(argv, env={"PATH": "/usr/bin:/bin"}, cwd="/", pass_fds=(seccomp_fd,))
            return execute(spawn, request, config.time_limit, config.max_output_bytes, stop)
        finally:
            os.close(seccomp_fd)

    def _run_unsafe(self, code: str, inputs: dict[str, Any], stop: StopToken) -> SandboxResult:
        config = self.config
        log.warning(
            "UNSAFE: running a code node WITHOUT isolation (RELAY_WORKFLOW_CODE_SANDBOX="
            "unsafe-local): the code can read this host's files and reach its network. "
            "Never use this mode for code you do not trust."
        )
        uid = config.sandbox_uid if os.geteuid() == 0 else None
        request = self._request(code, inputs, uid=uid)
        workdir = tempfile.mkdtemp(prefix="relay-code-")
        try:
            if uid is not None:
                os.chown(workdir, uid, uid)
            # Only what an interpreter needs: the parent's environment (secrets) stays behind.
            env = {
                "PATH": "/usr/local/bin:/usr/bin:/bin",
                "LANG": "C.UTF-8",
                "HOME": workdir,
                "TMPDIR": workdir,
                "MPLBACKEND": "Agg",
                "OPENBLAS_NUM_THREADS": "1",
                "OMP_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1",
            }
            argv = [config.python or sys.executable, "-I", "-X", "utf8", "-c", _child_source()]
            spawn = Spawn(argv, env=env, cwd=workdir)
            return execute(spawn, request, config.time_limit, config.max_output_bytes, stop)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


# --- the host's sandbox, checked once per process -------------------------------------------

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
    path = shutil.which(bwrap)
    if path is None:
        return SandboxStatus(False, "bubblewrap", f"the bubblewrap executable {bwrap!r} is missing")
    details: dict[str, Any] = {"bwrap": path, "version": bwrap_version(path)}
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
