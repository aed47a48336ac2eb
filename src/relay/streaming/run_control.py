"""A run's control state beside its stream: owner, attempts, stop flag, liveness, checkpoint.

Every execution of a run in a worker is an *attempt* (the first slice, and each resume after a
time-slice pause). ``claim`` starts one: it refuses while another attempt is running or when the
run has ended, so a redelivered message never runs a run twice. A stop request targets one
attempt, the running one or, while the run waits in a queue, the next one; a later attempt is
not aborted by an old flag. Running attempts beat; the reaper ends runs whose beats stopped.

:class:`RedisRunControl` keeps this in Redis (every multi-key step one Lua script, timestamps
from the Redis clock so that machines with skewed clocks agree); :class:`InMemoryRunControl`
has the same behaviour in one process.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

import redis

State = Literal["queued", "running", "paused", "finished"]
ALIVE_KEY = "relay:runs:alive"


@dataclass(frozen=True)
class Claim:
    """The outcome of :meth:`RunControl.claim`: ``attempt`` is set when this caller may run."""

    state: State
    attempt: int
    claimed: bool


class RunControl(Protocol):
    """Owner, attempts, stop flags and liveness of runs."""

    def register(self, run_id: str, owner: str, ttl: int) -> str:
        """Record ``owner`` unless the run has one; returns the run's owner."""
        ...

    def owner(self, run_id: str) -> str | None:
        """The run's owner (``account-<id>`` or ``end-user-<id>``), None when unknown."""
        ...

    def claim(self, run_id: str, owner: str, ttl: int) -> Claim:
        """Start the next attempt when the run is queued or paused."""
        ...

    def heartbeat(self, run_id: str, ttl: int) -> None:
        """The running attempt is alive."""
        ...

    def release(self, run_id: str, state: State, ttl: int) -> None:
        """The attempt ended: the run is ``paused`` (waits for its next slice) or ``finished``."""
        ...

    def request_stop(self, run_id: str, ttl: int) -> int | None:
        """Stop the running (or next) attempt; returns it, None for an unknown or ended run."""
        ...

    def stop_requested(self, run_id: str, attempt: int) -> bool:
        """Whether a stop targets ``attempt``."""
        ...

    def stopping(self, run_id: str) -> bool:
        """Whether a stop targets the current or next attempt (the listener's question)."""
        ...

    def stale(self, older_than: float, limit: int) -> list[str]:
        """Running runs whose last beat is more than ``older_than`` seconds old."""
        ...

    def save_checkpoint(self, run_id: str, data: str | None, ttl: int) -> None:
        """Keep (or drop, with None) the JSON checkpoint a paused run resumes from."""
        ...

    def load_checkpoint(self, run_id: str) -> str | None:
        """The saved checkpoint JSON."""
        ...


def _key(run_id: str, part: str) -> str:
    return f"relay:run:{{{run_id}}}:{part}"


# KEYS: meta; ARGV: owner, ttl
_REGISTER = """
redis.call('HSETNX', KEYS[1], 'owner', ARGV[1])
redis.call('HSETNX', KEYS[1], 'state', 'queued')
redis.call('HSETNX', KEYS[1], 'attempt', '0')
if redis.call('TTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return redis.call('HGET', KEYS[1], 'owner')
"""
# KEYS: meta, alive; ARGV: run id, owner, ttl
_CLAIM = """
local state = redis.call('HGET', KEYS[1], 'state') or 'queued'
local attempt = tonumber(redis.call('HGET', KEYS[1], 'attempt') or '0')
if state == 'running' or state == 'finished' then return {state, attempt, 0} end
attempt = redis.call('HINCRBY', KEYS[1], 'attempt', 1)
redis.call('HSETNX', KEYS[1], 'owner', ARGV[2])
redis.call('HSET', KEYS[1], 'state', 'running')
redis.call('EXPIRE', KEYS[1], ARGV[3])
local now = redis.call('TIME')
redis.call('ZADD', KEYS[2], now[1] + now[2] / 1000000, ARGV[1])
return {'running', attempt, 1}
"""
# KEYS: meta, alive; ARGV: run id, ttl
_BEAT = """
local now = redis.call('TIME')
redis.call('ZADD', KEYS[2], 'XX', now[1] + now[2] / 1000000, ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
"""
# KEYS: meta, alive, stop; ARGV: run id, state, ttl
_RELEASE = """
redis.call('HSET', KEYS[1], 'state', ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
if ARGV[2] == 'finished' then redis.call('DEL', KEYS[3]) end
"""
# KEYS: meta, stop; ARGV: ttl
_STOP = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state or state == 'finished' then return false end
local attempt = tonumber(redis.call('HGET', KEYS[1], 'attempt') or '0')
if state ~= 'running' then attempt = attempt + 1 end
redis.call('SET', KEYS[2], attempt, 'EX', ARGV[1])
return attempt
"""
# KEYS: alive; ARGV: older than (seconds), limit
_STALE = """
local now = redis.call('TIME')
local cutoff = now[1] + now[2] / 1000000 - tonumber(ARGV[1])
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff, 'LIMIT', 0, ARGV[2])
"""


class RedisRunControl:
    """:class:`RunControl` in Redis: a hash per run, a stop key, one sorted set of live runs."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._register = client.register_script(_REGISTER)
        self._claim = client.register_script(_CLAIM)
        self._beat = client.register_script(_BEAT)
        self._release = client.register_script(_RELEASE)
        self._stop = client.register_script(_STOP)
        self._stale = client.register_script(_STALE)

    def register(self, run_id: str, owner: str, ttl: int) -> str:
        return str(self._register(keys=[_key(run_id, "meta")], args=[owner, ttl]))

    def owner(self, run_id: str) -> str | None:
        found = self.client.hget(_key(run_id, "meta"), "owner")
        return None if found is None else str(found)

    def claim(self, run_id: str, owner: str, ttl: int) -> Claim:
        state, attempt, claimed = cast(
            "list[Any]",
            self._claim(keys=[_key(run_id, "meta"), ALIVE_KEY], args=[run_id, owner, ttl]),
        )
        return Claim(state=state, attempt=int(attempt), claimed=bool(int(claimed)))

    def heartbeat(self, run_id: str, ttl: int) -> None:
        self._beat(keys=[_key(run_id, "meta"), ALIVE_KEY], args=[run_id, ttl])

    def release(self, run_id: str, state: State, ttl: int) -> None:
        keys = [_key(run_id, "meta"), ALIVE_KEY, _key(run_id, "stop")]
        self._release(keys=keys, args=[run_id, state, ttl])

    def request_stop(self, run_id: str, ttl: int) -> int | None:
        target = self._stop(keys=[_key(run_id, "meta"), _key(run_id, "stop")], args=[ttl])
        return None if target is None else int(target)

    def stop_requested(self, run_id: str, attempt: int) -> bool:
        return self.client.get(_key(run_id, "stop")) == str(attempt)

    def stopping(self, run_id: str) -> bool:
        pipe = self.client.pipeline(transaction=False)
        pipe.get(_key(run_id, "stop"))
        pipe.hmget(_key(run_id, "meta"), ["state", "attempt"])
        target, (state, attempt) = pipe.execute()
        if target is None:
            return False
        current = int(attempt or 0) + (0 if state == "running" else 1)
        return int(target) >= current

    def stale(self, older_than: float, limit: int) -> list[str]:
        return [
            str(r)
            for r in cast("list[Any]", self._stale(keys=[ALIVE_KEY], args=[older_than, limit]))
        ]

    def save_checkpoint(self, run_id: str, data: str | None, ttl: int) -> None:
        if data is None:
            self.client.delete(_key(run_id, "checkpoint"))
        else:
            self.client.set(_key(run_id, "checkpoint"), data, ex=ttl)

    def load_checkpoint(self, run_id: str) -> str | None:
        found = self.client.get(_key(run_id, "checkpoint"))
        return None if found is None else str(found)


@dataclass
class _Run:
    owner: str
    state: State = "queued"
    attempt: int = 0
    stop: int | None = None
    beat: float | None = None
    checkpoint: str | None = None


class InMemoryRunControl:
    """:class:`RunControl` in one process (TTLs are not modelled)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, _Run] = {}

    def register(self, run_id: str, owner: str, ttl: int) -> str:
        with self._lock:
            return self._runs.setdefault(run_id, _Run(owner)).owner

    def owner(self, run_id: str) -> str | None:
        with self._lock:
            run = self._runs.get(run_id)
            return run.owner if run else None

    def claim(self, run_id: str, owner: str, ttl: int) -> Claim:
        with self._lock:
            run = self._runs.setdefault(run_id, _Run(owner))
            if run.state in ("running", "finished"):
                return Claim(run.state, run.attempt, False)
            run.attempt += 1
            run.state = "running"
            run.beat = time.time()
            return Claim("running", run.attempt, True)

    def heartbeat(self, run_id: str, ttl: int) -> None:
        with self._lock:
            run = self._runs.get(run_id)
            if run is not None and run.beat is not None:
                run.beat = time.time()

    def release(self, run_id: str, state: State, ttl: int) -> None:
        with self._lock:
            run = self._runs.get(run_id)
            if run is not None:
                run.state, run.beat = state, None
                if state == "finished":
                    run.stop = None

    def request_stop(self, run_id: str, ttl: int) -> int | None:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None or run.state == "finished":
                return None
            run.stop = run.attempt + (0 if run.state == "running" else 1)
            return run.stop

    def stop_requested(self, run_id: str, attempt: int) -> bool:
        with self._lock:
            run = self._runs.get(run_id)
            return run is not None and run.stop == attempt

    def stopping(self, run_id: str) -> bool:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None or run.stop is None:
                return False
            return run.stop >= run.attempt + (0 if run.state == "running" else 1)

    def stale(self, older_than: float, limit: int) -> list[str]:
        cutoff = time.time() - older_than
        with self._lock:
            found = [
                r for r, run in self._runs.items() if run.beat is not None and run.beat < cutoff
            ]
        return found[:limit]

    def save_checkpoint(self, run_id: str, data: str | None, ttl: int) -> None:
        with self._lock:
            run = self._runs.get(run_id)
            if run is not None:
                run.checkpoint = data

    def load_checkpoint(self, run_id: str) -> str | None:
        with self._lock:
            run = self._runs.get(run_id)
            return run.checkpoint if run else None
