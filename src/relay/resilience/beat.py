"""A beat scheduler that rides out Redis outages and hands its lock over quickly.

RedBeat keeps the schedule and a lock in Redis. Out of the box any Redis error inside a tick
propagates out of Celery's beat loop and the process exits (and with it the reaper, the outbox
relay and the scheduling tick); an error while taking the lock at start-up is swallowed and the
next tick fails on the missing lock. ``ResilientScheduler`` instead:

- retries the schedule's set-up with a capped backoff until Redis answers;
- treats a failed tick as an outage: logs it once, sleeps a short, growing interval and tries
  again, so the process stays up and resumes by itself when Redis is back;
- installs the schedule again when Redis lost it (restarted without persistence);
- takes the lock again (without blocking) when it lost it: Redis restarted without persistence
  has no lock at all, or a standby beat took over while this one could not reach Redis. Without
  the lock it does not send anything and polls again, which makes it the standby.

The lock's timeout and the polling interval are set in ``relay.adapters.broker`` so that a
standby takes over within seconds of the lock's expiry.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis.exceptions
from kombu.exceptions import OperationalError
from redbeat.schedulers import LUA_EXTEND_TO_SCRIPT, RedBeatScheduler, get_redis

log = logging.getLogger(__name__)

# What a Redis or broker outage raises in a tick.
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    OperationalError,
    ConnectionError,
    OSError,
)
_MAX_BACKOFF = 5.0


class ResilientScheduler(RedBeatScheduler):  # type: ignore[misc]
    """RedBeat's scheduler that survives Redis outages and re-takes a lost lock."""

    lock: Any
    lock_key: str | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._failures = 0
        self._holding = False
        super().__init__(*args, **kwargs)

    def setup_schedule(self) -> None:
        """Install the static entries, waiting for Redis as long as it takes."""
        delay = 0.5
        while True:
            try:
                super().setup_schedule()
                return
            except OUTAGE_ERRORS as exc:
                log.warning(
                    "beat cannot reach Redis to set up its schedule; retrying",
                    extra={"action": "beat.setup_retry", "delay": delay, "error": repr(exc)},
                )
                time.sleep(delay)
                delay = min(_MAX_BACKOFF, delay * 2)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        try:
            if self.lock_key and not self._keep_lock():
                # Standby: another beat holds the lock (or Redis has none yet for us).
                return float(min(self.max_interval, 1.0 + self._failures))
            if not get_redis(self.app).exists(self.app.redbeat_conf.schedule_key):
                # Redis came back empty (restarted without persistence): the schedule with it.
                log.warning(
                    "beat's schedule is gone from Redis; installing it again",
                    extra={"action": "beat.reinstall"},
                )
                super().setup_schedule()
            interval = float(self._tick_unlocked(*args, **kwargs))
        except OUTAGE_ERRORS as exc:
            self._failures += 1
            delay = float(min(_MAX_BACKOFF, 0.5 * 2 ** min(self._failures, 4)))
            if self._failures == 1:
                log.error(
                    "beat lost Redis; it keeps retrying",
                    extra={"action": "beat.outage", "error": repr(exc)},
                )
            return delay
        if self._failures:
            log.warning(
                "beat reached Redis again",
                extra={"action": "beat.recovered", "failed_ticks": self._failures},
            )
            self._failures = 0
        return interval

    def _tick_unlocked(self, *args: Any, **kwargs: Any) -> Any:
        # RedBeat's tick extends the lock first; ``_keep_lock`` did that already.
        lock_key, self.lock_key = self.lock_key, None
        try:
            return super().tick(*args, **kwargs)
        finally:
            self.lock_key = lock_key

    def _keep_lock(self) -> bool:
        """Extend the lock this beat holds, or try to take it; ``True`` when it is ours."""
        lock = self.lock
        if lock is None:
            client = get_redis(self.app)
            lock = client.lock(self.lock_key, timeout=self.lock_timeout, sleep=self.max_interval)
            lock.lua_extend = client.register_script(LUA_EXTEND_TO_SCRIPT)
            self.lock = lock
        try:
            if lock.owned():
                lock.extend(int(self.lock_timeout))
                return True
        except redis.exceptions.LockError:
            pass
        taken = bool(lock.acquire(blocking=False))
        if taken != self._holding:
            log.warning(
                "beat took the lock" if taken else "beat is standby: another beat holds the lock",
                extra={"action": "beat.lock_taken" if taken else "beat.standby"},
            )
        self._holding = taken
        return taken
