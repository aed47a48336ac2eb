"""Escape attempts from a code node: each is denied, and the sandbox still runs code after it.

Every attempt runs as a real workflow (start -> code -> end) in bubblewrap. Probes that the
kernel answers with an error catch it and report what happened, so the test asserts the exact
denial; bombs (fork, memory, loop, output) end the node at its limit.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from relay.workflow import CodeSandboxConfig, GraphRunFailedEvent, GraphRunSucceededEvent
from relay.workflow.events import GraphEngineEvent
from relay.workflow.nodes.sandbox import sandbox_status
from tests.unit.workflow.helpers import build, edge, end, make_engine, node, offline_services, start

from .conftest import require_sandbox
from .test_code_node import _leftover_processes

SECRET = "s3cr3t-outside-the-sandbox"


def _run(code: str, probe: dict[str, Any], **config: Any) -> GraphEngineEvent:
    graph = build(
        [
            start("probe"),
            node(
                "code",
                "code",
                code=code,
                code_language="python3",
                variables=[{"variable": "probe", "value_selector": ["start", "probe"]}],
                outputs={"report": {"type": "object"}},
            ),
            end(out=["code", "report"]),
        ],
        [edge("start", "code"), edge("code", "end")],
    )
    services = offline_services(code=CodeSandboxConfig(**config))
    events = list(make_engine(graph, {"probe": json.dumps(probe)}, services=services).run())
    return events[-1]


def _report(code: str, probe: dict[str, Any], **config: Any) -> dict[str, Any]:
    final = _run(code, probe, **config)
    assert isinstance(final, GraphRunSucceededEvent), final
    report: dict[str, Any] = final.outputs["out"]
    if os.environ.get("RELAY_TEST_SHOW_ESCAPES"):
        print(json.dumps(report)[:2000])
    return report


def _failure(code: str, probe: dict[str, Any] | None = None, **config: Any) -> str:
    final = _run(code, probe or {}, **config)
    assert isinstance(final, GraphRunFailedEvent), final
    if os.environ.get("RELAY_TEST_SHOW_ESCAPES"):
        print(final.error)
    return final.error


# Each probe runs an attempt and records the exception class (or the result when it worked).
ATTEMPT = """
import json

def attempt(fn):
    try:
        return ["done", fn()]
    except BaseException as exc:
        return [type(exc).__name__, str(exc)[:200]]

def main(probe):
    import os, socket, subprocess, ctypes, signal
    p = json.loads(probe)
    tries = {}
%s
    return {"report": tries}
"""


def _attempts(body: str) -> str:
    return ATTEMPT % "\n".join("    " + line for line in body.strip().splitlines())


@pytest.fixture(autouse=True)
def _still_healthy() -> Iterator[None]:
    """After every attempt: the self-check passes, code still runs, nothing is left behind."""
    require_sandbox()
    yield
    assert sandbox_status().ok
    report = _report("def main(probe):\n    return {'report': {'n': 1 + 1}}\n", {})
    assert report == {"n": 2}
    assert _leftover_processes() == []


def test_read_etc_shadow_and_host_directories() -> None:
    report = _report(
        _attempts(
            """
tries["shadow"] = attempt(lambda: open("/etc/shadow").read())
tries["passwd"] = attempt(lambda: open("/etc/passwd").read())
tries["root"] = attempt(lambda: sorted(os.listdir("/")))
tries["home"] = attempt(lambda: os.listdir("/home"))
tries["root_home"] = attempt(lambda: os.listdir("/root"))
"""
        ),
        {},
    )
    assert report["shadow"][0] == "FileNotFoundError"
    assert report["passwd"][0] == "FileNotFoundError"
    assert report["root"] == ["done", ["dev", "etc", "lib", "lib64", "opt", "tmp", "usr"]]
    assert report["home"][0] == "FileNotFoundError"
    assert report["root_home"][0] == "FileNotFoundError"


def test_read_the_database_and_redis_files(tmp_path: Path) -> None:
    """Files like var/relay.db and the Redis AOF, in the project's var dir and a temp dir."""
    var = Path("var").resolve()
    var.mkdir(exist_ok=True)
    in_var = var / f"sandbox-probe-{os.getpid()}.db"
    in_var.write_text(SECRET)
    (tmp_path / "redis").mkdir()
    files = [str(in_var), str(tmp_path / "relay.db"), str(tmp_path / "redis" / "appendonly.aof")]
    for path in files[1:]:
        Path(path).write_text(SECRET)
    try:
        report = _report(
            _attempts(
                """
for i, path in enumerate(p["files"]):
    tries[f"file{i}"] = attempt(lambda: open(path).read())
tries["var"] = attempt(lambda: os.listdir(p["var"]))
"""
            ),
            {"files": files, "var": str(var)},
        )
    finally:
        in_var.unlink()
    assert SECRET not in json.dumps(report)
    assert {name: result[0] for name, result in report.items()} == {
        "file0": "FileNotFoundError",
        "file1": "FileNotFoundError",
        "file2": "FileNotFoundError",
        "var": "FileNotFoundError",
    }


def test_connect_to_loopback_tcp_and_unix_sockets(tmp_path: Path) -> None:
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    path = tmp_path / "service.sock"
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(str(path))
    unix.listen()
    abstract_name = f"\0relay-sandbox-probe-{os.getpid()}"
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract.bind(abstract_name)
    abstract.listen()
    listeners = (tcp, unix, abstract)
    try:
        report = _report(
            _attempts(
                """
tries["tcp"] = attempt(lambda: socket.create_connection(("127.0.0.1", p["port"]), timeout=2))
tries["tcp6"] = attempt(lambda: socket.socket(socket.AF_INET6, socket.SOCK_STREAM))
tries["udp"] = attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
tries["netlink"] = attempt(lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW))
unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
tries["unix"] = attempt(lambda: unix.connect(p["unix"]))
abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
tries["abstract"] = attempt(lambda: abstract.connect("\\0" + p["abstract"]))
"""
            ),
            {"port": tcp.getsockname()[1], "unix": str(path), "abstract": abstract_name[1:]},
        )
        for listener in listeners:  # nothing ever reached them
            listener.setblocking(False)
            with pytest.raises(BlockingIOError):
                listener.accept()
    finally:
        for listener in listeners:
            listener.close()
    assert {name: result[0] for name, result in report.items()} == {
        "tcp": "PermissionError",  # seccomp: no socket family but AF_UNIX
        "tcp6": "PermissionError",
        "udp": "PermissionError",
        "netlink": "PermissionError",
        "unix": "FileNotFoundError",  # the host's socket files are not in the view
        "abstract": "ConnectionRefusedError",  # another network namespace
    }


def test_run_a_shell() -> None:
    report = _report(
        _attempts(
            """
tries["system"] = attempt(lambda: os.system("echo pwned > /tmp/pwned"))
tries["subprocess"] = attempt(lambda: subprocess.run(["/bin/sh", "-c", "id"]))
tries["python"] = attempt(lambda: subprocess.run(["/opt/python/bin/python3", "-c", "1"]))
tries["spawn"] = attempt(lambda: os.posix_spawn("/opt/python/bin/python3", ["python3"], {}))
tries["exec_shell"] = attempt(lambda: os.execv("/bin/sh", ["sh"]))
tries["exec_python"] = attempt(lambda: os.execv("/opt/python/bin/python3", ["python3"]))
tries["pwned"] = attempt(lambda: os.path.exists("/tmp/pwned"))
"""
        ),
        {},
    )
    assert report["system"][0] == "done"
    assert report["system"][1] != 0  # no shell ran: system() could not even start one
    assert report["pwned"] == ["done", False]
    for name in ("subprocess", "python", "spawn", "exec_python"):
        assert report[name][0] == "PermissionError", (name, report[name])
    assert report["exec_shell"][0] in ("PermissionError", "FileNotFoundError")


def test_signal_or_ptrace_another_process() -> None:
    report = _report(
        _attempts(
            """
libc = ctypes.CDLL(None, use_errno=True)
def ptrace(request, pid):
    if libc.syscall(101, request, pid, 0, 0) == -1:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return "attached"
tries["kill_parent"] = attempt(lambda: os.kill(p["pid"], signal.SIGKILL))
tries["kill_init"] = attempt(lambda: os.kill(1, signal.SIGKILL))
tries["ptrace_parent"] = attempt(lambda: ptrace(16, p["pid"]))  # PTRACE_ATTACH
tries["ptrace_init"] = attempt(lambda: ptrace(16, 1))
tries["ptrace_traceme"] = attempt(lambda: ptrace(0, 0))
tries["pids"] = attempt(lambda: [os.getpid(), os.getppid()])
tries["proc"] = attempt(lambda: os.listdir("/proc"))
"""
        ),
        {"pid": os.getpid()},
    )
    assert report["kill_parent"][0] == "ProcessLookupError"  # not in its pid namespace
    # Signals from inside a pid namespace to its init are dropped unless it handles them.
    assert report["kill_init"][0] in ("done", "PermissionError")
    for name in ("ptrace_parent", "ptrace_init", "ptrace_traceme"):
        assert report[name][0] == "PermissionError", (name, report[name])
    assert report["pids"] == ["done", [2, 1]]  # the code, and bubblewrap's init
    assert report["proc"][0] == "FileNotFoundError"  # no /proc to look for others


def test_read_another_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_TEST_SECRET", SECRET)
    report = _report(
        _attempts(
            """
tries["parent"] = attempt(lambda: open(f"/proc/{p['pid']}/environ").read())
tries["init"] = attempt(lambda: open("/proc/1/environ").read())
tries["self"] = attempt(lambda: open("/proc/self/environ").read())
"""
        ),
        {"pid": os.getpid()},
    )
    assert SECRET not in json.dumps(report)
    # No /proc: no process's environment (its own included) can be read from a file.
    assert {name: result[0] for name, result in report.items()} == {
        "parent": "FileNotFoundError",
        "init": "FileNotFoundError",
        "self": "FileNotFoundError",
    }


def test_write_outside_the_working_directory(tmp_path: Path) -> None:
    report = _report(
        _attempts(
            """
for name, path in [("root", "/x"), ("etc", "/etc/x"), ("site", "/opt/site/numpy/x"),
                   ("stdlib", "/opt/python/lib/x"), ("usr", "/usr/lib/x"), ("dev", "/dev/x"),
                   ("shm", "/dev/shm/x"), ("host", p["host"])]:
    tries[name] = attempt(lambda: open(path, "w").write("x"))
tries["workdir"] = attempt(lambda: open("/tmp/ok.txt", "w").write("fine"))
for name, path in [("sysctl", "/proc/sys/kernel/hostname"), ("sysrq", "/proc/sysrq-trigger"),
                   ("drop_caches", "/proc/sys/vm/drop_caches")]:
    tries[name] = attempt(lambda: open(path, "w").write("1"))
big = b"x" * (1024 * 1024)
def fill(path, mib):
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(big)
tries["big_file"] = attempt(lambda: fill("/tmp/big", 64))
tries["fill_tmpfs"] = attempt(lambda: [fill(f"/tmp/f{i}", 12) for i in range(10)])
"""
        ),
        {"host": str(tmp_path / "escaped.txt")},
    )
    for name in ("root", "etc", "site", "stdlib", "usr", "dev", "shm"):
        assert report[name][0] == "OSError", (name, report[name])
        assert "Read-only file system" in report[name][1]
    for name in ("sysctl", "sysrq", "drop_caches"):  # kernel settings: no /proc at all
        assert report[name][0] == "FileNotFoundError", (name, report[name])
    assert report["host"][0] == "FileNotFoundError"
    assert not (tmp_path / "escaped.txt").exists()
    assert report["workdir"] == ["done", 4]
    assert report["big_file"][0] == "OSError"  # RLIMIT_FSIZE: 16 MiB per file
    assert "File too large" in report["big_file"][1]
    assert report["fill_tmpfs"][0] == "OSError"  # the tmpfs holds 64 MiB
    assert "No space left on device" in report["fill_tmpfs"][1]


def test_fork_bomb() -> None:
    report = _report(
        _attempts(
            """
def bomb():
    while True:
        os.fork()
tries["fork"] = attempt(bomb)
import threading, time
threads = []
def thread_bomb():
    while True:
        t = threading.Thread(target=time.sleep, args=(5,), daemon=True)
        t.start()
        threads.append(t)
tries["threads"] = attempt(thread_bomb)
tries["count"] = len(threads)
"""
        ),
        {},
    )
    assert report["fork"][0] == "PermissionError"
    # Threads are allowed, but each stack counts against the address-space limit.
    assert report["threads"][0] in ("RuntimeError", "MemoryError")
    assert report["count"] < 200


def test_memory_bomb() -> None:
    error = _failure("def main(probe):\n    hog = [bytearray(2**20) for _ in range(10**5)]\n")
    assert error == "code failed: MemoryError: the code exceeded its memory limit"
    error = _failure("def main(probe):\n    hog = 'x' * (2 * 1024**3)\n")
    assert error == "code failed: MemoryError: the code exceeded its memory limit"


def test_endless_loop() -> None:
    error = _failure("def main(probe):\n    while True:\n        pass\n", time_limit=1.0)
    assert error == "code execution exceeded its time limit of 1s and was killed"


def test_cpu_limit_inside_wall_time() -> None:
    """Threads burning CPU in parallel hit RLIMIT_CPU before the wall-clock limit."""
    code = (
        "def main(probe):\n"
        "    import threading\n"
        "    def burn():\n"
        "        while True:\n"
        "            pass\n"
        "    for _ in range(4):\n"
        "        threading.Thread(target=burn, daemon=True).start()\n"
        "    burn()\n"
    )
    error = _failure(code, time_limit=1.5)
    assert error in (
        "code execution exceeded its CPU time limit and was killed",
        "code execution exceeded its time limit of 1.5s and was killed",
    )


def test_huge_output() -> None:
    # Writing straight to every descriptor (the reply channel among them) is cut at the budget.
    flood = (
        "def main(probe):\n"
        "    import os\n"
        "    chunk = b'x' * 65536\n"
        "    while True:\n"
        "        for fd in range(3, 12):\n"
        "            try:\n"
        "                os.write(fd, chunk)\n"
        "            except OSError:\n"
        "                pass\n"
    )
    assert _failure(flood) == f"code output is larger than {1024 * 1024} bytes"
    # A returned value past the budget.
    big = "def main(probe):\n    return {'report': {'s': 'x' * (8 * 1024 * 1024)}}\n"
    assert _failure(big) == f"code output is larger than {1024 * 1024} bytes"
    # Printing is captured in the sandbox and truncated.
    printed = "def main(probe):\n    for _ in range(10**5):\n        print('y' * 100)\n"
    printed += "    return {'report': {}}\n"
    graph_end = _run(printed, {})
    assert isinstance(graph_end, GraphRunSucceededEvent)


def test_sandbox_refuses_when_bubblewrap_is_missing() -> None:
    error = _failure("def main(probe):\n    return {'report': {}}\n", bwrap="/nonexistent/bwrap")
    assert error.startswith("code sandbox unavailable: the bubblewrap executable")
    assert "RELAY_WORKFLOW_CODE_SANDBOX=unsafe-local" in error
