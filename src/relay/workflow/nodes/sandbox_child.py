"""The code node's child process (relay-sandbox-child). It runs as a fresh interpreter
(``python -I -c <this file>``), inside bubblewrap or, in unsafe-local mode, as a plain child,
and imports nothing from relay, so nothing of the parent's memory exists in it.

Order matters: limits are set, privileges dropped, the exec filter loaded and the import
allow-list installed before any user code is compiled.
Protocol: one JSON request on stdin ``{code, inputs, limits, uid, site, modules, hint,
exec_filter}``; one JSON line on the original stdout ``{ok, result | error, stdout}``. What the
user code prints is captured.
"""

from __future__ import annotations

import base64
import ctypes
import io
import json
import os
import resource
import sys
import traceback
from typing import Any

_CAP_DAC_READ_SEARCH = 2
_PR_SET_KEEPCAPS = 8
_PR_SET_NO_NEW_PRIVS = 38
_CAPABILITY_VERSION_3 = 0x20080522
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class _AllowList:
    """Import finder: top-level modules outside the stdlib and the allowed packages fail with
    "No module named X" and how to allow it (in the sandbox they are not even there)."""

    def __init__(self, modules: list[str], hint: str) -> None:
        # The standard library: its names, plus whatever its directories hold (for instance
        # _sysconfigdata_*, which stdlib_module_names does not list).
        stdlib_paths = [
            entry
            for entry in sys.path
            if entry.startswith(sys.base_prefix)
            and "site-packages" not in entry
            and "dist-packages" not in entry
        ]
        found: set[str] = set()
        for directory in stdlib_paths:
            try:
                names = os.listdir(directory)
            except OSError:
                continue
            found.update(name.split(".", 1)[0] for name in names)
        self.modules = (
            set(modules) | found | set(sys.stdlib_module_names) | set(sys.builtin_module_names)
        )
        self.hint = hint

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        top = fullname.partition(".")[0]
        if top not in self.modules:
            raise ModuleNotFoundError(f"No module named {top!r}; {self.hint}", name=top)


def _load_exec_filter(program: bytes) -> None:
    """From here on execve fails: the process stays the interpreter it is (seccomp stacks on
    bubblewrap's filter, which had to let bubblewrap exec this interpreter)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _Program(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")


def _set_limits(limits: dict[str, int]) -> None:
    memory = limits["memory_bytes"]
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_seconds"], limits["cpu_seconds"] + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_bytes"], limits["file_bytes"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


def _drop_privileges(uid: int) -> None:
    """Become ``uid`` keeping only CAP_DAC_READ_SEARCH.

    A different uid without CAP_SYS_PTRACE cannot open the parent's /proc/<pid>/mem or
    /proc/<pid>/environ. Read-search is kept because the interpreter and its packages may live
    under a directory only root can traverse (e.g. /root/.pyenv).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    resource.setrlimit(resource.RLIMIT_NPROC, (64, 64))
    if libc.prctl(_PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_KEEPCAPS)")
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    header = _CapHeader(_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    data[0].effective = data[0].permitted = 1 << _CAP_DAC_READ_SEARCH
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")


def _run(request: dict[str, Any], captured: io.StringIO) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "__sandbox__"}
    exec(compile(request["code"], "<code node>", "exec"), namespace)
    entry = namespace.get("main")
    if not callable(entry):
        return {"ok": False, "error": "the code must define a function main()"}
    result = entry(**request["inputs"])
    if not isinstance(result, dict):
        return {"ok": False, "error": f"main() must return a dict, got {type(result).__name__}"}
    return {"ok": True, "result": result}


def main() -> None:
    """Read the request, confine the process, run the code, write the reply."""
    reply_fd = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    request = json.loads(sys.stdin.read())
    try:
        _set_limits(request["limits"])
        if request.get("uid") is not None:
            _drop_privileges(int(request["uid"]))
        if request.get("exec_filter"):
            _load_exec_filter(base64.b64decode(request["exec_filter"]))
        if request.get("modules") is not None:
            sys.meta_path.insert(0, _AllowList(request["modules"], request.get("hint", "")))
        if request.get("site"):
            sys.path.append(request["site"])
    except OSError as exc:
        # Fail closed: never run user code with the parent's privileges or without limits.
        reply: dict[str, Any] = {"ok": False, "error": f"sandbox setup failed: {exc}"}
    else:
        captured = io.StringIO()
        sys.stdout = captured
        try:
            reply = _run(request, captured)
        except MemoryError:
            reply = {"ok": False, "error": "MemoryError: the code exceeded its memory limit"}
        except BaseException as exc:
            lines = traceback.format_exception(exc)
            reply = {
                "ok": False,
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": "".join(lines[-5:]),
            }
        sys.stdout = sys.__stdout__
        reply["stdout"] = captured.getvalue()[:10_000]
    try:
        text = json.dumps(reply, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        text = json.dumps({"ok": False, "error": f"main() returned data that is not JSON: {exc}"})
    os.write(reply_fd, (text + "\n").encode("utf-8"))


if __name__ == "__main__":
    main()
