"""The embedded redis-server: owned by its starter, reused by others, never left behind."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import redis

from relay.adapters.embedded_redis import EmbeddedRedis


def _server_pids(socket: Path) -> list[int]:
    return [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if p.info["cmdline"] and str(socket) in " ".join(p.info["cmdline"])
    ]


def test_owner_starts_and_stops_it(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path)
    assert server.ensure() is True
    assert server.owned
    client = redis.Redis(unix_socket_path=str(server.socket))
    client.set("k", "v")
    assert client.get("k") == b"v"
    client.close()

    second = EmbeddedRedis(tmp_path)
    assert second.ensure() is False, "a live server is reused"
    assert not second.owned
    second.stop()
    assert server.alive(), "a non-owner never stops the server"

    server.stop()
    assert not server.alive()
    assert _server_pids(server.socket) == []


def test_server_dies_with_a_killed_owner(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from relay.adapters.embedded_redis import EmbeddedRedis
        EmbeddedRedis(Path({str(tmp_path)!r})).ensure()
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    assert owner.stdout.readline().strip() == "ready"
    socket = tmp_path / "redis.sock"
    pids = _server_pids(socket)
    assert len(pids) == 1
    owner.kill()
    owner.wait()
    _, alive = psutil.wait_procs([psutil.Process(pid) for pid in pids], timeout=10)
    assert alive == [], "redis-server outlived its SIGKILLed owner"
