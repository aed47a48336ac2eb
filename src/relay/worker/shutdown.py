"""Graceful shutdown of a worker, whether SIGTERM reaches its main process or its process group.

systemd and container runtimes send SIGTERM to every process of the group. Celery's pool children
reset SIGTERM to its default action, so a child running a task died at once and its task with it.
Here a pool child never dies of SIGTERM: it only raises the process's drain flag
(:data:`relay.resilience.shutdown.DRAIN`), which a workflow run answers by pausing at its next
node boundary. An idle child leaves when the pool closes.

The main process runs Celery's warm shutdown: it stops consuming, lets running tasks finish and
hands back what it had reserved but not started (with ``acks_late`` nothing unrun is acked; the
broker connection's close returns unacknowledged messages to their queue). It also passes the
SIGTERM on to its pool children (the signal may have reached the main process alone) and starts
a deadline: children still running a task after the grace period are killed, and Celery rejects
their messages back to the queue (``reject_on_worker_lost``), so the task runs again elsewhere.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import psutil
from celery import signals

from relay.resilience.shutdown import DRAIN

log = logging.getLogger(__name__)

SHUTDOWN_REASON = "worker shutting down"
STALE_MARGIN = 15.0
"""Seconds past the grace period after which a pool child's drain flag is no shutdown's."""
COLD_GRACE = 2.0
"""Seconds a cold shutdown (SIGQUIT) leaves running tasks before their processes are killed."""


Children = Callable[[], list[psutil.Process]]


def pool_processes(worker: Any) -> list[psutil.Process]:
    """The live pool processes of a Celery ``WorkController`` (children of this process only:
    a standalone worker may also have started the embedded Redis, which must outlive them)."""
    pool = getattr(getattr(worker, "pool", None), "_pool", None)
    found: list[psutil.Process] = []
    for process in list(getattr(pool, "_pool", None) or []):
        pid = getattr(process, "pid", None)
        if not pid:
            continue
        try:
            child = psutil.Process(pid)
            if child.ppid() == os.getpid() and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.Error:
            continue
    return found


def kill_survivors(children: Children, deadline: float, poll: float = 0.1) -> int:
    """Wait until ``deadline`` (monotonic) for ``children()`` to exit; SIGKILL the rest.

    Returns how many were killed. Their tasks end as lost workers, which Celery rejects back to
    the queue: handed back, not acknowledged.
    """
    while time.monotonic() < deadline:
        if not children():
            return 0
        time.sleep(poll)
    killed = 0
    for child in children():
        try:
            child.kill()
            killed += 1
        except psutil.Error:
            continue
    return killed


class ShutdownHooks:
    """The signal handlers and Celery signal receivers of one worker."""

    def __init__(self, grace: float, children: Children | None = None) -> None:
        self.grace = grace
        self.in_pool_child = False
        self.children: Children = children if children is not None else list
        self._deadline: threading.Thread | None = None
        self._main_pid: int | None = None

    # --- pool children ------------------------------------------------------------------------

    def on_process_init(self, **_: Any) -> None:
        """In a new pool child: SIGTERM never kills it (a task finishes; idle, it leaves when the
        pool closes).

        billiard replaces the child's exit handlers after this initializer but keeps a signal
        that is ignored, so SIGTERM is ignored until the first task starts; from then on it
        raises the drain flag.
        """
        if os.getpid() == self._main_pid:
            # The solo pool announces itself in the main process, which runs the tasks there:
            # it keeps Celery's own SIGTERM handler (a warm shutdown), or it would never stop.
            return
        DRAIN.reset()
        self.in_pool_child = True
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def on_task_start(self, **_: Any) -> None:
        """A task starts: in a pool child, SIGTERM now raises the drain flag."""
        if not self.in_pool_child:
            return  # the main process (solo or threads pool) keeps Celery's own handler
        since = DRAIN.since
        if since is not None and time.monotonic() - since > self.grace + STALE_MARGIN:
            # A stopping worker is gone by now: this SIGTERM was no shutdown (``celery control
            # revoke --terminate`` sends one), and later work must not pause because of it.
            DRAIN.reset()
        if signal.getsignal(signal.SIGTERM) != self.on_child_sigterm:
            signal.signal(signal.SIGTERM, self.on_child_sigterm)
            signal.siginterrupt(signal.SIGTERM, False)

    def on_child_sigterm(self, signum: int, frame: FrameType | None) -> None:
        DRAIN.begin(SHUTDOWN_REASON)

    # --- the main process ---------------------------------------------------------------------

    def on_worker_init(self, instance: Any = None, **_: Any) -> None:
        """Celery builds its ``WorkController`` (before the pool): its pool processes are the
        ones to watch, and this is the main process."""
        self._main_pid = os.getpid()
        if instance is not None:
            self.children = lambda: pool_processes(instance)

    def on_shutting_down(self, sig: str = "SIGTERM", how: str = "Warm", **_: Any) -> None:
        """Celery begins a warm (or cold) shutdown in the main process."""
        DRAIN.begin(SHUTDOWN_REASON)
        children = self.children()
        for child in children:
            try:
                child.send_signal(signal.SIGTERM)  # harmless when the group already got it
            except psutil.Error:
                continue
        if self._deadline is not None:
            return
        grace = self.grace if how == "Warm" else min(self.grace, COLD_GRACE)
        log.warning(
            f"worker {how.lower()} shutdown on {sig}: running tasks get {grace:g}s to finish",
            extra={"action": "worker.shutdown", "grace": grace, "processes": len(children)},
        )
        self._deadline = threading.Thread(
            target=self._enforce, args=(time.monotonic() + grace,), name="shutdown-deadline",
            daemon=True,
        )  # fmt: skip
        self._deadline.start()

    def _enforce(self, deadline: float) -> None:
        killed = kill_survivors(self.children, deadline)
        if killed:
            log.warning(
                f"grace period over: {killed} task process(es) killed, their tasks go back "
                "to the queue",
                extra={"action": "worker.shutdown_killed", "killed": killed},
            )


def install_shutdown_hooks(celery: Any, grace: float) -> ShutdownHooks:
    """Connect graceful shutdown to the worker signals of ``celery`` (idempotent per app)."""
    hooks = ShutdownHooks(grace)
    uid = f"relay-shutdown-{id(celery)}"
    signals.worker_process_init.connect(hooks.on_process_init, weak=False, dispatch_uid=uid)
    signals.task_prerun.connect(hooks.on_task_start, weak=False, dispatch_uid=uid + "-pre")
    signals.celeryd_init.connect(hooks.on_worker_init, weak=False, dispatch_uid=uid + "-init")
    signals.worker_shutting_down.connect(
        hooks.on_shutting_down, weak=False, dispatch_uid=uid + "-down"
    )
    return hooks
