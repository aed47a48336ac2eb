"""Beat survives a Redis outage (no restart by hand) and a standby takes over a dead beat's lock."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import redis

from tests.outages import OwnRedis, clean_env, relay_process, stop_process
from tests.waiting import wait_until

LOCK = "relay:beat::lock"


def _beat_env(tmp_path: Path, server: OwnRedis) -> dict[str, str]:
    return clean_env(
        RELAY_REDIS_URL=server.url,
        RELAY_DATABASE_URL=f"sqlite:///{tmp_path / 'relay.db'}",
        RELAY_VAR_DIR=str(tmp_path / "var"),
        RELAY_CELERY_BEAT_MAX_INTERVAL="1",
        RELAY_CELERY_BEAT_LOCK_TIMEOUT="4",
        RELAY_LOG_LEVEL="INFO",
    )


def _outbox_sends(server: OwnRedis) -> int:
    # The relay-outbox entry runs every 5 s: its messages land on the maintenance queues.
    with redis.Redis.from_url(server.url) as client:
        return sum(int(client.llen(key)) for key in client.scan_iter(match="*", _type="list"))


def test_beat_rides_out_a_redis_restart_without_persistence(tmp_path: Path) -> None:
    server = OwnRedis(tmp_path / "redis").start()
    beat = relay_process(["beat"], _beat_env(tmp_path, server), tmp_path, tmp_path / "beat.log")
    try:
        wait_until(lambda: _outbox_sends(server) > 0, timeout=40, what="beat's first sends")
        server.kill()
        wait_until(
            lambda: "beat lost Redis" in (tmp_path / "beat.log").read_text(),
            timeout=30,
            what="beat to notice the outage",
        )
        assert beat.poll() is None, (tmp_path / "beat.log").read_text()
        server.start()  # empty: no lock, no schedule, no queued messages
        wait_until(lambda: _outbox_sends(server) > 0, timeout=40, what="beat to send again")
        with redis.Redis.from_url(server.url) as client:
            assert client.exists(LOCK), "beat runs again without holding its lock"
        assert beat.poll() is None
    finally:
        stop_process(beat)
        server.stop()


def test_a_standby_beat_takes_over_within_seconds_of_the_lock_expiry(tmp_path: Path) -> None:
    server = OwnRedis(tmp_path / "redis").start()
    env = _beat_env(tmp_path, server)
    first = relay_process(["beat"], env, tmp_path, tmp_path / "first.log")
    second = None
    try:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        wait_until(lambda: client.exists(LOCK), timeout=40, what="the first beat's lock")
        holder = client.get(LOCK)
        second = relay_process(["beat"], env, tmp_path, tmp_path / "second.log")
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
        # The lock lives 4 s and the standby polls every second: well under the old 300 s.
        wait_until(
            lambda: client.get(LOCK) not in (None, holder),
            timeout=15,
            what="the standby to take the lock",
        )
        for key in client.scan_iter(match="*", _type="list"):
            client.delete(key)  # what follows is the new holder's work
        wait_until(lambda: _outbox_sends(server) > 0, timeout=30, what="the standby's sends")
        client.close()
    finally:
        stop_process(first)
        if second is not None:
            stop_process(second)
        server.stop()
