"""Graceful shutdown pieces on real processes: the drain flag, a pool child's SIGTERM, the
deadline that hands back what outlives the grace period, and ``relay up``'s ordered stop."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from relay.resilience.shutdown import DRAIN, Drain
from relay.supervisor import Child
from relay.worker.shutdown import ShutdownHooks, kill_survivors

# A fresh interpreter, not a fork: a fork of the test process inherits whatever lock one of its
# threads (left behind by earlier tests) held at that moment, and can hang before it is ready.
SPAWN = multiprocessing.get_context("spawn")


def test_the_drain_flag_keeps_its_first_reason_until_reset() -> None:
    drain = Drain()
    assert not drain.is_set()
    drain.begin("first")
    drain.begin("second")
    assert drain.is_set()
    assert drain.reason == "first"
    assert drain.since is not None
    drain.reset()
    assert not drain.is_set()
    assert drain.reason is None


def _pool_child(task: bool, ready: multiprocessing.synchronize.Event) -> None:
    hooks = ShutdownHooks(grace=5)
    hooks.on_process_init()
    if task:
        hooks.on_task_start()
    ready.set()
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        if DRAIN.is_set():
            os._exit(0)  # the running task saw the flag and wound down
        time.sleep(0.01)
    os._exit(4)  # still alive, flag not raised


@pytest.mark.parametrize(("task", "exitcode"), [(True, 0), (False, 4)])
def test_sigterm_never_kills_a_pool_child_and_raises_its_flag_once_it_runs_tasks(
    task: bool, exitcode: int
) -> None:
    ready = SPAWN.Event()
    child = SPAWN.Process(target=_pool_child, args=(task, ready))
    child.start()
    assert ready.wait(30)
    os.kill(child.pid or 0, signal.SIGTERM)
    child.join(10)
    assert child.exitcode == exitcode


def _sleeper(seconds: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"])


def test_the_deadline_kills_only_what_outlives_the_grace_period() -> None:
    quick, stuck = _sleeper(0.2), _sleeper(60)
    tracked = [psutil.Process(quick.pid), psutil.Process(stuck.pid)]

    def alive() -> list[psutil.Process]:
        for process in (quick, stuck):
            process.poll()  # reap, so a finished child is not a zombie
        return [p for p in tracked if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]

    started = time.monotonic()
    assert kill_survivors(alive, time.monotonic() + 1.0) == 1
    assert 1.0 <= time.monotonic() - started < 3.0
    assert quick.wait(5) == 0
    assert stuck.wait(5) == -signal.SIGKILL


def test_the_deadline_returns_at_once_when_everything_finished() -> None:
    started = time.monotonic()
    assert kill_survivors(list, time.monotonic() + 30) == 0
    assert time.monotonic() - started < 1.0


# --- relay up's children ------------------------------------------------------------------------

# Exits on SIGTERM, leaving behind a grandchild of its group that ignores SIGTERM.
LEAVES_ONE_BEHIND = """
import os, signal, subprocess, sys, time
subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"])
with open(sys.argv[1], "w") as out:
    out.write("ready")
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
time.sleep(60)
"""


def _group(pgid: int) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (ProcessLookupError, psutil.Error):
            continue
    return found


def test_a_stopped_child_leaves_no_process_of_its_group_behind(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    marker = tmp_path / "ready"
    child = Child("api", [sys.executable, "-c", LEAVES_ONE_BEHIND, str(marker)], stop_timeout=10)
    child.start(dict(os.environ))
    assert child.process is not None
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    assert len(_group(child.process.pid)) == 2
    with caplog.at_level(logging.INFO, logger="relay.supervisor"):
        child.stop()
    assert child.exit_code() == 0
    deadline = time.monotonic() + 5
    while _group(child.process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _group(child.process.pid) == []
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("stopping api (pid") for m in messages)
    assert any(m.startswith("api stopped in") for m in messages)


def test_a_child_that_ignores_sigterm_is_killed_after_its_stop_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ignores = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    child = Child("beat", [sys.executable, "-c", ignores], stop_timeout=0.5)
    child.start(dict(os.environ))
    time.sleep(0.5)  # past the interpreter's start, so the handler is in place
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="relay.supervisor"):
        child.stop()
    assert time.monotonic() - started < 5
    assert child.exit_code() == -signal.SIGKILL
    assert any("did not stop within 0.5s; killed" in r.getMessage() for r in caplog.records)


def test_a_pool_childs_drain_flag_outliving_any_shutdown_is_cleared_at_its_next_task() -> None:
    hooks = ShutdownHooks(grace=1)
    DRAIN.reset()
    try:
        DRAIN.begin("revoke --terminate")
        hooks.on_process_init()  # the flag is cleared for a new child...
        DRAIN.begin("revoke --terminate")
        hooks.on_task_start()  # ...and kept while a shutdown could still be under way
        assert DRAIN.is_set()
        DRAIN.since = time.monotonic() - 60
        hooks.on_task_start()  # no stopping worker lives that long past its grace
        assert not DRAIN.is_set()
    finally:
        DRAIN.reset()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def test_the_main_process_keeps_celerys_sigterm_handler() -> None:
    hooks = ShutdownHooks(grace=1)
    before = signal.getsignal(signal.SIGTERM)
    hooks.on_task_start()  # a solo or threads pool runs tasks in the main process
    assert signal.getsignal(signal.SIGTERM) == before


def test_the_solo_pool_keeps_the_main_process_sigterm_handler() -> None:
    """The solo pool announces ``worker_process_init`` in the main process, where Celery's own
    SIGTERM handler (a warm shutdown) must stay, before and after tasks run."""

    def celery_handler(signum: int, frame: object) -> None:
        raise AssertionError("not called")

    previous = signal.signal(signal.SIGTERM, celery_handler)
    try:
        hooks = ShutdownHooks(grace=5)
        hooks.on_worker_init(instance=None)  # the main process builds its worker
        hooks.on_process_init()  # the solo pool, in that same process
        hooks.on_task_start()
        assert signal.getsignal(signal.SIGTERM) is celery_handler
        assert not hooks.in_pool_child
    finally:
        signal.signal(signal.SIGTERM, previous)
