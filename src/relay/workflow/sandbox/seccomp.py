"""The seccomp filters of the code sandbox, compiled to BPF with libseccomp.

Two stages, because bubblewrap must still ``execve`` the interpreter after it loads its filter:

- ``base_filter()`` is handed to bubblewrap (``--seccomp FD``) and holds from the interpreter's
  first instruction: no debugging or reading other processes, no mounts or new namespaces, no
  kernel keyrings, module loading, BPF, perf or io_uring, no sockets but AF_UNIX, and no new
  processes (fork, vfork and a clone without CLONE_THREAD fail; threads still work).
- ``exec_filter()`` is loaded by the child itself before it compiles the user's code: from then
  on ``execve`` fails too, so the process can only ever be the interpreter it started as.

Denied calls fail with an errno (code sees PermissionError) rather than killing the process, so
a probe fails as an ordinary Python error and the run reports it. Syscalls of other ABIs (i386,
x32) kill the process: libseccomp's default for an architecture the filter does not list.
"""

from __future__ import annotations

import errno
from functools import cache
from typing import Any

_AF_UNIX = 1
_CLONE_THREAD = 0x00010000
# CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET, NEWTIME
_CLONE_NAMESPACES = (
    0x00020000,
    0x02000000,
    0x04000000,
    0x08000000,
    0x10000000,
    0x20000000,
    0x40000000,
    0x00000080,
)
_TIOCSTI = 0x5412

# Always denied (EPERM). Grouped by what they would let code do.
DENIED_SYSCALLS: tuple[str, ...] = (
    # other processes: debug, read or write their memory, steal their descriptors
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    # new processes (threads use clone with CLONE_THREAD, filtered below)
    "fork",
    "vfork",
    # the filesystem view and namespaces
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "unshare",
    "setns",
    "open_by_handle_at",
    "name_to_handle_at",
    # the kernel itself
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "personality",
    "acct",
    "swapon",
    "swapoff",
    "syslog",
    "quotactl",
    "lookup_dcookie",
    "iopl",
    "ioperm",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "sethostname",
    "setdomainname",
    "vhangup",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "fanotify_init",
    "move_pages",
    "migrate_pages",
    "uselib",
    "ustat",
    "sysfs",
    "_sysctl",
    "nfsservctl",
)

EXEC_SYSCALLS: tuple[str, ...] = ("execve", "execveat")


class SeccompUnavailable(RuntimeError):
    """libseccomp (or its Python binding) is not installed or cannot compile the filter."""


def _library() -> Any:
    try:
        import pyseccomp
    except (ImportError, RuntimeError, OSError) as exc:  # RuntimeError: no libseccomp.so
        raise SeccompUnavailable(
            f"libseccomp is not usable ({exc}); install the Debian package libseccomp2"
        ) from exc
    return pyseccomp


def _compile(build: Any) -> bytes:
    import os

    seccomp = _library()
    try:
        syscall_filter = seccomp.SyscallFilter(seccomp.ALLOW)
        build(seccomp, syscall_filter)
        fd = os.memfd_create("relay-seccomp")
        with os.fdopen(fd, "w+b") as buffer:
            syscall_filter.export_bpf(buffer)
            buffer.seek(0)
            return buffer.read()
    except OSError as exc:
        raise SeccompUnavailable(f"cannot compile the seccomp filter: {exc}") from exc


def _base(seccomp: Any, syscall_filter: Any) -> None:
    deny = seccomp.ERRNO(errno.EPERM)
    for name in DENIED_SYSCALLS:
        syscall_filter.add_rule(deny, name)
    # clone3 passes its flags in memory the filter cannot read: ENOSYS makes glibc fall back to
    # clone, whose flags it can.
    syscall_filter.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    syscall_filter.add_rule(deny, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, _CLONE_THREAD, 0))
    for flag in _CLONE_NAMESPACES:
        syscall_filter.add_rule(deny, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    no_family = seccomp.ERRNO(errno.EACCES)
    for name in ("socket", "socketpair"):
        syscall_filter.add_rule(no_family, name, seccomp.Arg(0, seccomp.NE, _AF_UNIX))
    # Typing into a terminal's input queue (there is none in the sandbox; belt and braces).
    syscall_filter.add_rule(deny, "ioctl", seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, _TIOCSTI))


def _exec(seccomp: Any, syscall_filter: Any) -> None:
    for name in EXEC_SYSCALLS:
        syscall_filter.add_rule(seccomp.ERRNO(errno.EPERM), name)


@cache
def base_filter() -> bytes:
    """BPF program for bubblewrap's ``--seccomp``."""
    return _compile(_base)


@cache
def exec_filter() -> bytes:
    """BPF program the child loads itself before running user code."""
    return _compile(_exec)
