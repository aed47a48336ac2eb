"""``relay up``: the whole stack as one process tree on one machine.

The supervisor owns the embedded Redis (when no URL is configured), runs migrations, starts a
worker consuming every queue, beat and the API server as child processes, waits for ``/health``
and the queue check, and prints the URLs. SIGINT or SIGTERM stops the children in order (API,
beat, worker with a warm shutdown) and then Redis, each step bounded and logged; a child's whole
process group gets the SIGTERM and whatever is left of it after the child exits is killed. Every
child also carries a parent-death signal, so even a SIGKILLed supervisor leaves nothing behind.

A child that dies while the stack runs is started again (after a backoff that grows while it
keeps dying soon after each start, and resets once it ran for a while); the embedded Redis too.
One dead process never takes the rest of the stack down with it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO

import httpx

from relay.adapters.embedded_redis import EmbeddedRedis, die_with_parent
from relay.adapters.logs import init_logging
from relay.composition import create_runtime, resolve_redis_url
from relay.config import Settings
from relay.errors import RelayError
from relay.first_run import AdminToken, ensure_admin_token, next_steps
from relay.migrations import upgrade
from relay.services.queue_service import require_consumers

log = logging.getLogger(__name__)

# Held (flock) by the running ``relay up`` of a var directory; holds its pid for the message.
LOCK_FILE = "relay-up.lock"


@dataclass
class Child:
    """One supervised process."""

    name: str
    argv: list[str]
    stop_timeout: float
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    started_at: float = 0.0
    restarts: int = 0
    # While dead: when to start it again (monotonic seconds).
    restart_at: float | None = None

    def start(self, env: dict[str, str]) -> None:
        self.started_at = time.monotonic()
        self.restart_at = None
        self.process = subprocess.Popen(
            self.argv,
            env=env,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
            process_group=0,  # Ctrl-C reaches the supervisor only; it stops children in order
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exit_code(self) -> int | None:
        return self.process.poll() if self.process is not None else None

    def stop(self) -> None:
        """SIGTERM the child's whole process group (as systemd would), wait up to
        ``stop_timeout``, then SIGKILL what is left of the group; one log line says how it went.
        """
        process = self.process
        if process is None or process.poll() is not None:
            return
        started = time.monotonic()
        log.info(
            f"stopping {self.name} (pid {process.pid}, up to {self.stop_timeout:g}s)",
            extra={"action": "up.stopping", "child": self.name, "timeout": self.stop_timeout},
        )
        _signal_group(process.pid, signal.SIGTERM)
        try:
            code = process.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)
            code = process.wait()
            log.warning(
                f"{self.name} did not stop within {self.stop_timeout:g}s; killed",
                extra={"action": "up.kill", "child": self.name, "exit_code": code},
            )
            return
        # Whatever the child left in its group (a pool process, a gunicorn worker) goes too.
        _signal_group(process.pid, signal.SIGKILL)
        log.info(
            f"{self.name} stopped in {time.monotonic() - started:.1f}s (exit code {code})",
            extra={"action": "up.stopped", "child": self.name, "exit_code": code},
        )


def _signal_group(pgid: int, signum: int) -> None:
    """Signal every process of the group ``pgid`` (nothing when it is gone)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


# Seconds a worker has to exit after its grace period (killing, rejecting, closing the broker).
WORKER_EXIT_MARGIN = 10.0
# Seconds the embedded Redis has to write its append-only file and exit.
REDIS_STOP_TIMEOUT = 10.0

# Backoff before starting a dead child again: doubles per quick death, up to the cap; a child
# that ran for ``STABLE_AFTER`` seconds starts over at the first step.
RESTART_BACKOFF = 1.0
RESTART_BACKOFF_MAX = 30.0
STABLE_AFTER = 60.0


def restart_delay(child: Child, now: float) -> float:
    """Seconds to wait before starting ``child`` again after it died at ``now``."""
    if now - child.started_at >= STABLE_AFTER:
        child.restarts = 0
    delay = min(RESTART_BACKOFF_MAX, RESTART_BACKOFF * 2.0**child.restarts)
    child.restarts += 1
    return delay


class Supervisor:
    """Runs and stops relay's processes."""

    def __init__(self, settings: Settings, *, startup_timeout: float = 60.0) -> None:
        self.settings = settings
        self.startup_timeout = startup_timeout
        self.stopping = threading.Event()
        relay = [sys.executable, "-m", "relay"]
        self.children = [
            Child(
                "worker",
                [
                    *relay,
                    "worker",
                    "--queues",
                    "all",
                    "--concurrency",
                    str(settings.celery.concurrency),
                    "--quiet",
                ],
                # Running tasks get the grace period, then are handed back; a margin to exit.
                stop_timeout=settings.celery.shutdown_grace + WORKER_EXIT_MARGIN,
            ),
            Child("beat", [*relay, "beat", "--quiet"], stop_timeout=10),
            Child("api", [*relay, "api"], stop_timeout=15),
        ]
        self.embedded: EmbeddedRedis | None = None
        self.admin_token: AdminToken | None = None
        self._lock: IO[str] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.settings.api.host}:{self.settings.api.port}"

    def run(self) -> int:
        """Start everything, wait for a signal, stop everything. Returns the exit code."""
        init_logging(self.settings)
        started = time.monotonic()
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            self._claim()
            env = self._prepare()
            for child in self.children:
                child.start(env)
            self._wait_until_up()
            self._banner(time.monotonic() - started)
            while not self.stopping.wait(0.5):
                self._keep_alive(env)
            return 0
        except RelayError as exc:
            print(f"relay up failed: {exc.message}", file=sys.stderr, flush=True)
            return 1
        finally:
            self.shutdown()

    def _banner(self, elapsed: float) -> None:
        lines = [
            f"relay is up in {elapsed:.1f}s",
            f"  API        {self.base_url}/v1",
            f"  docs       {self.base_url}/docs",
            f"  health     {self.base_url}/health",
            f"  metrics    {self.base_url}/metrics",
        ]
        token = self.admin_token
        if token is not None and token.generated:
            lines += [
                "",
                f"Admin token (generated into {token.path}, mode 0600; shown only this once):",
                f"  {token.value}",
                "",
                next_steps(self.base_url, token.path),
            ]
        elif token is not None:
            lines.append(f"  admin token in {token.path}")
        lines.append("Press Ctrl-C to stop.")
        print("\n".join(lines), flush=True)

    def _claim(self) -> None:
        """Refuse at once when another ``relay up`` runs on this var directory or the port is
        taken: a second stack would share the first one's Redis and silence its beat."""
        var_dir = self.settings.var_dir
        var_dir.mkdir(parents=True, exist_ok=True)
        path = var_dir / LOCK_FILE
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the process's life
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            handle.close()
            raise RelayError(
                f"another relay up (pid {holder}) is running on {var_dir}; stop it first, "
                "or give this one its own RELAY_VAR_DIR"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._lock = handle
        host, port = self.settings.api.host, self.settings.api.port
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise RelayError(
                    f"port {port} on {host} is in use ({exc.strerror}); set RELAY_API_PORT "
                    "to another port"
                ) from None

    def _keep_alive(self, env: dict[str, str]) -> None:
        """Start again what died: the embedded Redis first, then children after their backoff."""
        if self.embedded is not None and self.embedded.owned and not self.embedded.alive():
            log.error("embedded redis is down; starting it again", extra={"action": "up.redis"})
            try:
                self.embedded.ensure()
            except RelayError as exc:
                log.error(exc.message, extra={"action": "up.redis_failed"})
        now = time.monotonic()
        for child in self.children:
            if child.alive() or self.stopping.is_set():
                continue
            if child.restart_at is None:
                delay = restart_delay(child, now)
                child.restart_at = now + delay
                log.error(
                    f"{child.name} exited with {child.exit_code()}; restarting it in {delay:g}s",
                    extra={
                        "action": "up.child_restart",
                        "child": child.name,
                        "exit_code": child.exit_code(),
                        "delay": delay,
                        "restarts": child.restarts,
                    },
                )
            elif now >= child.restart_at:
                child.start(env)
                log.warning(f"{child.name} started again", extra={"action": "up.child_restarted"})

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stopping.set()

    def _prepare(self) -> dict[str, str]:
        redis_url, self.embedded = resolve_redis_url(self.settings)
        upgrade(self.settings.database_url)
        env = dict(os.environ)
        env["RELAY_VAR_DIR"] = str(self.settings.var_dir)
        if not self.settings.api.admin_token:
            # Admin endpoints would answer 403 admin_disabled: generate a token the first time.
            self.admin_token = ensure_admin_token(self.settings.var_dir)
            env["RELAY_API_ADMIN_TOKEN"] = self.admin_token.value
        if self.embedded is not None:
            # Children reuse the supervisor's server; they never own it.
            env["RELAY_REDIS_URL"] = redis_url
        return env

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        last = "no answer yet"
        with httpx.Client(timeout=5) as client:
            while time.monotonic() < deadline:
                if self.stopping.is_set():
                    raise RelayError("interrupted during start-up")
                dead = [c.name for c in self.children if not c.alive()]
                if dead:
                    raise RelayError(f"{', '.join(dead)} exited during start-up")
                try:
                    response = client.get(self.base_url + "/health")
                    if response.status_code == 200:
                        break
                    last = ", ".join(response.json().get("failing", [])) or str(
                        response.status_code
                    )
                except httpx.HTTPError as exc:
                    last = str(exc)
                time.sleep(0.2)
            else:
                raise RelayError(f"not healthy after {self.startup_timeout:.0f}s: {last}")
        settings = self.settings
        if self.embedded is not None:
            settings = settings.model_copy(
                update={"redis": settings.redis.model_copy(update={"url": self.embedded.url})}
            )
        runtime = create_runtime(settings)
        try:
            require_consumers(runtime)
        finally:
            runtime.close()

    def stop_budget(self) -> float:
        """The most seconds :meth:`shutdown` takes (each step is bounded)."""
        return sum(child.stop_timeout for child in self.children) + REDIS_STOP_TIMEOUT

    def shutdown(self) -> None:
        """Stop children in order: the API (no new requests; open streams are told to resume
        elsewhere), beat (nothing new is scheduled), the worker (warm: running tasks finish or
        go back to their queue), then the embedded Redis, which they all needed until then."""
        self.stopping.set()
        started = time.monotonic()
        running = [c for c in self.children if c.alive()]
        if running:
            log.info(
                f"stopping relay (at most {self.stop_budget():g}s)",
                extra={"action": "up.shutdown", "budget": self.stop_budget()},
            )
        for child in reversed(self.children):
            child.stop()
        if self.embedded is not None:
            owned = self.embedded.owned
            self.embedded.stop(REDIS_STOP_TIMEOUT)
            if owned:
                log.info("embedded redis stopped", extra={"action": "up.stopped", "child": "redis"})
        if running:
            log.info(
                f"relay stopped in {time.monotonic() - started:.1f}s",
                extra={"action": "up.stopped_all"},
            )
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None
