"""One child process, fed a request and read back within a time and an output budget.

The parent never buffers more than ``max_output`` bytes of what the child writes: code that
floods its stdout (the reply channel) is killed as soon as it passes the budget, not after.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from relay.workflow.errors import NodeError, NodeStopped
from relay.workflow.stop import StopToken

_STDERR_KEEP = 64 * 1024


@dataclass(frozen=True)
class SandboxResult:
    """What ``main()`` returned and what the code printed."""

    result: dict[str, Any]
    stdout: str


@dataclass(frozen=True)
class Spawn:
    """How to start the child."""

    argv: Sequence[str]
    env: dict[str, str]
    cwd: str | None = None
    pass_fds: tuple[int, ...] = ()


def execute(
    spawn: Spawn, request: bytes, time_limit: float, max_output: int, stop: StopToken
) -> SandboxResult:
    """Run the child to its end; raise NodeError on failure, limits or a bad reply."""
    process = subprocess.Popen(
        list(spawn.argv),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=spawn.cwd,
        env=spawn.env,
        close_fds=True,
        pass_fds=spawn.pass_fds,
        start_new_session=True,  # its own process group: killing it kills its children
    )
    unsubscribe = stop.on_set(lambda: kill(process))
    try:
        out, err = _exchange(process, request, time_limit, max_output)
        process.wait()
    finally:
        unsubscribe()
        if process.poll() is None:
            kill(process)
            process.wait()
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
    if stop.is_set():
        raise NodeStopped(stop.reason or "stopped")
    return _reply(process.returncode, out, err, max_output)


def _exchange(
    process: subprocess.Popen[bytes], request: bytes, time_limit: float, max_output: int
) -> tuple[bytes, bytes]:
    assert process.stdin is not None
    assert process.stdout is not None
    assert process.stderr is not None
    deadline = time.monotonic() + time_limit
    pending = memoryview(request)
    out: list[bytes] = []
    err: list[bytes] = []
    out_size = err_size = 0
    os.set_blocking(process.stdin.fileno(), False)
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdin, selectors.EVENT_WRITE)
        selector.register(process.stdout, selectors.EVENT_READ)
        selector.register(process.stderr, selectors.EVENT_READ)
        while len(selector.get_map()) > 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                kill(process)
                raise NodeError(
                    f"code execution exceeded its time limit of {time_limit:g}s and was killed"
                )
            for key, _ in selector.select(remaining):
                stream = key.fileobj
                if stream is process.stdin:
                    try:
                        pending = pending[os.write(process.stdin.fileno(), pending) :]
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:
                        pending = pending[:0]  # it ended early; its stderr says why
                    if not pending:
                        selector.unregister(stream)
                        process.stdin.close()
                    continue
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(stream)
                elif stream is process.stdout:
                    out_size += len(chunk)
                    if out_size > max_output:
                        kill(process)
                        raise NodeError(f"code output is larger than {max_output} bytes")
                    out.append(chunk)
                elif err_size < _STDERR_KEEP:
                    err_size += len(chunk)
                    err.append(chunk)
    return b"".join(out), b"".join(err)


def _reply(returncode: int, out: bytes, err: bytes, max_output: int) -> SandboxResult:
    lines = out.decode("utf-8", errors="replace").strip().splitlines()
    if returncode != 0 or not lines:
        if returncode == -signal.SIGXCPU:
            raise NodeError("code execution exceeded its CPU time limit and was killed")
        if returncode == -signal.SIGSYS:
            raise NodeError("code made a system call the sandbox forbids and was killed")
        tail = err.decode("utf-8", errors="replace").strip()[-500:]
        raise NodeError(f"code process ended with status {returncode}: {tail}")
    try:
        reply = json.loads(lines[-1])
    except ValueError:
        raise NodeError("code process wrote something other than its reply") from None
    if not isinstance(reply, dict) or not reply.get("ok"):
        error = reply.get("error") if isinstance(reply, dict) else None
        raise NodeError(f"code failed: {error}")
    if not isinstance(reply.get("result"), dict):
        raise NodeError("code process wrote something other than its reply")
    return SandboxResult(result=reply["result"], stdout=str(reply.get("stdout", "")))


def kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's process group (bubblewrap takes the whole sandbox down with it)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
