"""Runs code node Python in a separate, confined process: fresh interpreter, clean environment,
time and memory limits, an unprivileged user when relay runs as root, JSON in and out.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from relay.workflow.config import CodeSandboxConfig
from relay.workflow.errors import NodeError, NodeStopped
from relay.workflow.stop import StopToken


@cache
def _child_source() -> str:
    return (Path(__file__).with_name("sandbox_child.py")).read_text(encoding="utf-8")


@dataclass(frozen=True)
class SandboxResult:
    """What ``main()`` returned and what the code printed."""

    result: dict[str, Any]
    stdout: str


class CodeSandbox:
    """One child process per call; nothing is shared between calls."""

    def __init__(self, config: CodeSandboxConfig) -> None:
        self.config = config

    def run(self, code: str, inputs: dict[str, Any], stop: StopToken) -> SandboxResult:
        """Run ``main(**inputs)`` from ``code``; raises NodeError on failure or time out."""
        config = self.config
        uid = config.sandbox_uid if os.geteuid() == 0 else None
        try:
            request = json.dumps(
                {
                    "code": code,
                    "inputs": inputs,
                    "uid": uid,
                    "limits": {
                        "memory_bytes": config.memory_limit_mb * 1024 * 1024,
                        "cpu_seconds": math.ceil(config.time_limit) + 1,
                        "file_bytes": config.max_file_size_mb * 1024 * 1024,
                    },
                },
                ensure_ascii=False,
            ).encode()
        except (TypeError, ValueError) as exc:
            raise NodeError(f"code inputs are not JSON data: {exc}") from exc
        workdir = tempfile.mkdtemp(prefix="relay-code-")
        try:
            if uid is not None:
                os.chown(workdir, uid, uid)
            return self._spawn(request, workdir, stop)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _spawn(self, request: bytes, workdir: str, stop: StopToken) -> SandboxResult:
        config = self.config
        # Only what an interpreter needs: the parent's environment (secrets) stays behind.
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": workdir,
            "TMPDIR": workdir,
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
        process = subprocess.Popen(
            [config.python or sys.executable, "-I", "-X", "utf8", "-c", _child_source()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=workdir,
            env=env,
            close_fds=True,
            start_new_session=True,  # its own process group: killing it kills its children
        )
        unsubscribe = stop.on_set(lambda: _kill(process))
        try:
            out, err = process.communicate(request, timeout=config.time_limit)
        except subprocess.TimeoutExpired:
            _kill(process)
            process.communicate()
            raise NodeError(
                f"code execution exceeded its time limit of {config.time_limit:g}s and was killed"
            ) from None
        finally:
            unsubscribe()
            if process.poll() is None:
                _kill(process)
                process.communicate()
        if stop.is_set():
            raise NodeStopped(stop.reason or "stopped")
        return self._reply(process.returncode, out, err)

    def _reply(self, returncode: int, out: bytes, err: bytes) -> SandboxResult:
        if len(out) > self.config.max_output_bytes:
            raise NodeError(f"code output is larger than {self.config.max_output_bytes} bytes")
        lines = out.decode("utf-8", errors="replace").strip().splitlines()
        if returncode != 0 or not lines:
            if returncode == -signal.SIGXCPU:
                raise NodeError("code execution exceeded its CPU time limit and was killed")
            tail = err.decode("utf-8", errors="replace").strip()[-500:]
            raise NodeError(f"code process ended with status {returncode}: {tail}")
        reply = json.loads(lines[-1])
        if not reply.get("ok"):
            raise NodeError(f"code failed: {reply.get('error')}")
        return SandboxResult(result=reply["result"], stdout=reply.get("stdout", ""))


def _kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
