"""Per-minute event counters: how often each signal's receivers succeeded and failed.

``EventCounters`` is the port the bus flushes into and the health check reads from;
``RedisEventCounters`` shares them across processes (hashes ``relay:events:<minute>:<signal>``
with fields ``success``, ``failure``, ``total_ms``; kept 24 h), ``InMemoryEventCounters`` keeps
them in this process (tests, single-process tools).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import redis

from relay.resilience.outages import is_outage
from relay.resilience.spool import Spool, SpoolEntry, SpoolFull

log = logging.getLogger(__name__)

COUNTER_PREFIX = "relay:events:"
COUNTER_TTL = 24 * 3600

# (minute, signal) -> [success, failure, total milliseconds]
Counts = Mapping[tuple[int, str], list[float]]


class EventCounters(Protocol):
    """Where the bus adds its per-minute counts, and where they are read back."""

    def add(self, counts: Counts) -> None:
        """Add ``counts``; best effort (a failure is logged, never raised)."""
        ...

    def read(self, minutes: Iterable[int], signals: Iterable[str]) -> dict[str, list[float]]:
        """Totals per signal over ``minutes``: ``[success, failure, total_ms]``."""
        ...


SPOOL_KIND = "event_counts"
APPLIED_PREFIX = "relay:events:applied:"
APPLIED_TTL = 3600
"""Seconds a batch's marker lives: a batch whose reply was lost (applied, then spooled) and
replayed within this time is not counted twice. Short, since every flush writes one."""

# KEYS[1] the batch's applied marker, KEYS[2..] one hash per (minute, signal).
# ARGV[1] marker ttl, ARGV[2] counter ttl, then success, failure, total_ms per hash.
_ADD_ONCE = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
for i = 2, #KEYS do
  local base = 3 + (i - 2) * 3
  if tonumber(ARGV[base]) ~= 0 then redis.call('HINCRBY', KEYS[i], 'success', ARGV[base]) end
  if tonumber(ARGV[base + 1]) ~= 0 then
    redis.call('HINCRBY', KEYS[i], 'failure', ARGV[base + 1])
  end
  redis.call('HINCRBYFLOAT', KEYS[i], 'total_ms', ARGV[base + 2])
  redis.call('EXPIRE', KEYS[i], ARGV[2])
end
return 1
"""


class RedisEventCounters:
    """``EventCounters`` in Redis hashes, one per minute and signal.

    With a ``spool``, each flush is one batch with an idempotency key, added by a script that
    sets the batch's marker and the counts together; a batch Redis cannot take is spooled and
    added by replay through the same script, so no count is lost to an outage and none is added
    twice. Without one, counts are best effort (an outage drops the flush).
    """

    def __init__(self, client: redis.Redis, spool: Spool | None = None) -> None:
        self.redis = client
        self.spool = spool
        self._add_once = client.register_script(_ADD_ONCE)
        if spool is not None:
            spool.register(SPOOL_KIND, self._replay)

    def add(self, counts: Counts) -> None:
        if self.spool is not None:
            self._add_or_spool(self.spool, counts)
            return
        pipe = self.redis.pipeline(transaction=False)
        for (minute, name), (success, failure, total_ms) in counts.items():
            key = f"{COUNTER_PREFIX}{minute}:{name}"
            if success:
                pipe.hincrby(key, "success", int(success))
            if failure:
                pipe.hincrby(key, "failure", int(failure))
            pipe.hincrbyfloat(key, "total_ms", total_ms)
            pipe.expire(key, COUNTER_TTL)
        try:
            pipe.execute()
        except Exception:
            # Counters are best effort: never fail a request because Redis blinked.
            log.warning("event counters not flushed", extra={"action": "event.flush_failed"})

    def _add_or_spool(self, spool: Spool, counts: Counts) -> None:
        rows = [
            [minute, name, int(success), int(failure), float(total_ms)]
            for (minute, name), (success, failure, total_ms) in counts.items()
        ]
        if not rows:
            return
        batch = uuid.uuid4().hex
        try:
            self._apply(batch, rows)
        except Exception as exc:
            if not is_outage(exc):
                log.warning("event counters not flushed", extra={"action": "event.flush_failed"})
                return
            try:
                spool.append(SpoolEntry(kind=SPOOL_KIND, key=batch, body={"rows": rows}))
            except (SpoolFull, OSError):
                log.warning("event counters dropped", extra={"action": "event.flush_failed"})

    def _apply(self, batch: str, rows: list[list[Any]]) -> None:
        keys = [APPLIED_PREFIX + batch] + [f"{COUNTER_PREFIX}{r[0]}:{r[1]}" for r in rows]
        args: list[int | float] = [APPLIED_TTL, COUNTER_TTL]
        for row in rows:
            args.extend([int(row[2]), int(row[3]), float(row[4])])
        self._add_once(keys=keys, args=args)

    def _replay(self, entry: SpoolEntry) -> None:
        self._apply(entry.key, list(entry.body["rows"]))

    def read(self, minutes: Iterable[int], signals: Iterable[str]) -> dict[str, list[float]]:
        pipe = self.redis.pipeline(transaction=False)
        keys = [(name, minute) for name in signals for minute in minutes]
        for name, minute in keys:
            pipe.hgetall(f"{COUNTER_PREFIX}{minute}:{name}")
        totals: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0.0])
        for (name, _), values in zip(keys, pipe.execute(), strict=True):
            if values:
                row = totals[name]
                row[0] += int(values.get("success", 0))
                row[1] += int(values.get("failure", 0))
                row[2] += float(values.get("total_ms", 0))
        return dict(totals)


class InMemoryEventCounters:
    """``EventCounters`` in this process."""

    def __init__(self) -> None:
        self._counts: dict[tuple[int, str], list[float]] = defaultdict(lambda: [0, 0, 0.0])
        self._lock = threading.Lock()

    def add(self, counts: Counts) -> None:
        with self._lock:
            for key, values in counts.items():
                row = self._counts[key]
                for index, value in enumerate(values):
                    row[index] += value

    def read(self, minutes: Iterable[int], signals: Iterable[str]) -> dict[str, list[float]]:
        wanted = set(minutes)
        names = set(signals)
        totals: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0.0])
        with self._lock:
            for (minute, name), values in self._counts.items():
                if minute in wanted and name in names:
                    row = totals[name]
                    for index, value in enumerate(values):
                        row[index] += value
        return dict(totals)
