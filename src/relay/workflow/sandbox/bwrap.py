"""The bubblewrap command line of one code sandbox.

The sandbox gets fresh user, mount, pid, network, ipc, uts and cgroup namespaces, and a root
filesystem built from nothing: the shared libraries under /usr/lib, the interpreter and its
standard library under /opt/python, the allowed packages under /opt/site, a read-only minimal
/dev, no /proc, and one size-bounded tmpfs at /tmp, its working directory and the only writable
place. Everything else of the host (var/ with the database and Redis files, /etc, /home, /root,
other processes, the Redis socket) does not exist in it.
"""

from __future__ import annotations

import glob
import os
import sys
import sysconfig
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from relay.workflow.sandbox.packages import PackageView

PYTHON_ROOT = "/opt/python"
SITE_DIR = "/opt/site"
WORKDIR = "/tmp"
SANDBOX_UID = 65534


@dataclass(frozen=True)
class Interpreter:
    """Where relay's interpreter lives on the host."""

    executable: Path
    stdlib: Path
    libpython: Path | None  # a shared libpython, when the interpreter links one

    @property
    def inner_executable(self) -> str:
        return f"{PYTHON_ROOT}/bin/python3"

    @property
    def inner_stdlib(self) -> str:
        return f"{PYTHON_ROOT}/lib/{self.stdlib.name}"


@cache
def interpreter() -> Interpreter:
    """relay's own interpreter (a venv's python resolves to the one it was made from)."""
    executable = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    libpython: Path | None = None
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):
        name = sysconfig.get_config_var("LDLIBRARY") or ""
        candidate = Path(sysconfig.get_config_var("LIBDIR") or "") / name
        if name and candidate.exists():
            libpython = candidate.resolve()
    return Interpreter(executable, stdlib, libpython)


def _read_only_empty(path: str) -> list[str]:
    """Hide a directory of the view behind an empty, read-only tmpfs."""
    return ["--tmpfs", path, "--remount-ro", path]


def _system_libraries() -> list[str]:
    args = ["--ro-bind", "/usr/lib", "/usr/lib", "--ro-bind-try", "/usr/lib64", "/usr/lib64"]
    for top in ("/lib", "/lib64", "/lib32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    # The host's Python packages (Debian's python3-*) are not the allowed packages.
    for directory in sorted(glob.glob("/usr/lib/python3*")):
        args += _read_only_empty(directory)
    for name in ("ld.so.cache", "localtime"):
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    return args


def _python(python: Interpreter) -> list[str]:
    args = ["--ro-bind", str(python.executable), python.inner_executable]
    args += ["--ro-bind", str(python.stdlib), python.inner_stdlib]
    for sub in ("site-packages", "dist-packages"):
        if (python.stdlib / sub).is_dir():
            args += _read_only_empty(f"{python.inner_stdlib}/{sub}")
    if python.libpython is not None:
        args += ["--ro-bind", str(python.libpython), f"{PYTHON_ROOT}/lib/{python.libpython.name}"]
    return args


def _packages(view: PackageView) -> list[str]:
    args = ["--dir", SITE_DIR]
    for entry in view.entries:
        args += ["--ro-bind", str(entry), f"{SITE_DIR}/{entry.name}"]
    return args


def environment() -> dict[str, str]:
    """The code's whole environment."""
    return {
        "PATH": f"{PYTHON_ROOT}/bin",
        "LANG": "C.UTF-8",
        "HOME": WORKDIR,
        "TMPDIR": WORKDIR,
        "LD_LIBRARY_PATH": f"{PYTHON_ROOT}/lib",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": f"{WORKDIR}/.matplotlib",
        # glibc reserves 64 MiB of address space per thread arena: keep the limit for data.
        "MALLOC_ARENA_MAX": "2",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def command(
    bwrap: str, view: PackageView, seccomp_fd: int, workdir_bytes: int, child_source: str
) -> list[str]:
    """argv running ``child_source`` in a new sandbox; ``seccomp_fd`` must be inherited."""
    python = interpreter()
    args = [
        bwrap,
        "--unshare-all",  # user, mount, pid, net, ipc, uts, cgroup
        "--unshare-user",
        "--disable-userns",  # and no further user namespaces inside
        "--uid",
        str(SANDBOX_UID),
        "--gid",
        str(SANDBOX_UID),
        "--hostname",
        "sandbox",
        "--cap-drop",
        "ALL",
        "--new-session",  # no controlling terminal to push input into
        "--die-with-parent",
        *_system_libraries(),
        *_python(python),
        *_packages(view),
        # No /proc: when relay runs as root, the sandbox's uid maps to root outside its user
        # namespace, and procfs has files only file modes protect (/proc/sys, /proc/irq...).
        "--dev",
        "/dev",
        # bubblewrap's /dev is an unbounded tmpfs the sandbox user owns: no writing there (the
        # device nodes themselves are bind mounts and stay usable).
        "--remount-ro",
        "/dev",
        "--size",
        str(workdir_bytes),
        "--perms",
        "0700",
        "--tmpfs",
        WORKDIR,
        "--chdir",
        WORKDIR,
        "--remount-ro",
        "/",
        "--clearenv",
    ]
    for name, value in environment().items():
        args += ["--setenv", name, value]
    args += ["--seccomp", str(seccomp_fd)]
    # -I: no environment variables, no user site; -S: no site-packages of the interpreter.
    args += ["--", python.inner_executable, "-I", "-S", "-X", "utf8", "-c", child_source]
    return args
