"""``relay api`` (gunicorn, several gevent workers) as a process of one test."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from relay.config import Settings
from tests.waiting import wait_until

ADMIN = "observability-admin-token"


@dataclass
class ApiProcess:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/health/live", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def api_server(settings: Settings, workers: int = 3, **env: str) -> Iterator[ApiProcess]:
    """Serve the API of ``settings`` (schema already in place) until the block ends."""
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    environment.update(
        RELAY_DATABASE_URL=settings.database_url,
        RELAY_REDIS_URL=str(settings.redis.url),
        RELAY_VAR_DIR=str(settings.var_dir),
        RELAY_API_PORT=str(port),
        RELAY_API_WORKERS=str(workers),
        RELAY_API_ADMIN_TOKEN=ADMIN,
        RELAY_LOG_LEVEL="INFO",
        **env,
    )
    log = settings.var_dir.parent / f"api-{port}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "relay", "api"],
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: process.poll() is not None or _answers(url), 60, "the API to answer")
        assert process.poll() is None, log.read_text()
        yield ApiProcess(url, process, log)
    finally:
        if process.poll() is None:
            # SIGINT: gunicorn's quick shutdown (no graceful wait for idle keep-alive sockets).
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
