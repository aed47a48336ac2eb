"""Run streams that survive a Redis outage: events go to the local spool, then to their stream.

:class:`SpoolingRunChannel` wraps the Redis channel. An append Redis cannot take (connection
refused, timeout, or its circuit open) is written to the spool (``relay.resilience.spool``) with
a stream id chosen here, ``<ms>-<seq>``, above the last id this process knows of the run, and that
id is returned as usual. Once a run has entries in the spool, its later events are spooled too
(behind them) until replay has written them, so a run's events reach the stream in the order they
were published, whatever the order of recovery.

Replay (:func:`stream_replayer`) writes each entry with ``XADD`` and its own id, so the ids a
client may already hold (from an earlier part of the stream) and the ids of the replayed events
follow each other and ``Last-Event-ID`` resumes across the outage. Each replayed entry carries its
spool key (field ``k``) and the replay script applies an entry once: an entry whose key is
already in the stream is skipped (a replay that was cut short by a crash), and
a stream that has its final event takes nothing more (like a live append). Should the stream
hold a later id than a spooled entry (another host's clock ran ahead, or the reaper ended the run
meanwhile), the entry is appended with a new id and its spool key, which is looked up first.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis

from relay.resilience.breaker import Breakers
from relay.resilience.outages import is_outage
from relay.resilience.spool import Spool, SpoolEntry
from relay.streaming.channels import RedisStreamChannel, StreamEntry, parse_id, stream_key

log = logging.getLogger(__name__)

KIND = "run_event"
CIRCUIT = "redis"
SCAN_BACK = 200
"""Entries of a stream searched for a spool key when an entry could not keep its id."""

# KEYS[1] stream; ARGV: id, event, data, final (0/1), retention, active ttl, spool key, scan back.
# Returns the id written, the id already holding this entry, or false for a finished stream.
_REPLAY = """
local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if found[1] then
  local fields = found[1][2]
  for j = 1, #fields, 2 do
    if fields[j] == 'k' and fields[j + 1] == ARGV[7] then return ARGV[1] end
  end
end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', tonumber(ARGV[8]))
for i = 1, #last do
  local fields = last[i][2]
  for j = 1, #fields, 2 do
    if fields[j] == 'k' and fields[j + 1] == ARGV[7] then return last[i][1] end
  end
end
if last[1] then
  local fields = last[1][2]
  for j = 1, #fields, 2 do
    if fields[j] == 'f' then return false end
  end
end
local id = ARGV[1]
if last[1] then
  local top = last[1][1]
  local tms, tseq = string.match(top, '(%d+)-(%d+)')
  local ims, iseq = string.match(id, '(%d+)-(%d+)')
  tms, tseq, ims, iseq = tonumber(tms), tonumber(tseq), tonumber(ims), tonumber(iseq)
  if ims < tms or (ims == tms and iseq <= tseq) then id = '*' end
end
local written
if ARGV[4] == '1' then
  written = redis.call('XADD', KEYS[1], id, 'e', ARGV[2], 'd', ARGV[3], 'k', ARGV[7], 'f', '1')
  redis.call('EXPIRE', KEYS[1], ARGV[5])
else
  written = redis.call('XADD', KEYS[1], id, 'e', ARGV[2], 'd', ARGV[3], 'k', ARGV[7])
  redis.call('EXPIRE', KEYS[1], ARGV[6])
end
return written
"""


class SpoolingRunChannel:
    """A :class:`~relay.streaming.channels.RunChannel` that spools appends Redis cannot take."""

    def __init__(
        self,
        inner: RedisStreamChannel,
        spool: Spool,
        breakers: Breakers,
        *,
        clock: Any = time.time,
    ) -> None:
        self.inner = inner
        self.spool = spool
        self.breakers = breakers
        self._clock = clock
        self._last: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    @property
    def retention(self) -> int:
        return self.inner.retention

    def append(self, run_id: str, event: str, data: str, *, final: bool = False) -> str | None:
        with self.spool.lock:
            if not self.spool.pending(run_id):
                try:
                    written = self.breakers.call(
                        CIRCUIT, self.inner.append, run_id, event, data, final=final
                    )
                except Exception as exc:
                    if not is_outage(exc):
                        raise
                    log.warning(
                        "run event spooled: Redis is unreachable",
                        extra={"action": "stream.spooled", "run_id": run_id},
                    )
                else:
                    if written is not None:
                        self._remember(run_id, parse_id(written))
                    return written
            entry_id = self._next_id(run_id)
            self.spool.append(
                SpoolEntry(
                    kind=KIND,
                    key=f"{run_id}/{entry_id}",
                    group=run_id,
                    body={"run": run_id, "id": entry_id, "e": event, "d": data, "f": final},
                )
            )
            return entry_id

    def read(
        self, run_id: str, after: str, *, block: float = 0.0, count: int = 500
    ) -> list[StreamEntry]:
        return self.inner.read(run_id, after, block=block, count=count)

    def last(self, run_id: str) -> StreamEntry | None:
        return self.inner.last(run_id)

    def ttl(self, run_id: str) -> int:
        return self.inner.ttl(run_id)

    def _remember(self, run_id: str, position: tuple[int, int]) -> None:
        with self._lock:
            if len(self._last) > 10_000:
                self._last.clear()  # only a hint for ids chosen during an outage
            if position > self._last.get(run_id, (0, 0)):
                self._last[run_id] = position

    def _next_id(self, run_id: str) -> str:
        now = int(self._clock() * 1000)
        with self._lock:
            millis, seq = self._last.get(run_id, (0, 0))
            position = (now, 0) if now > millis else (millis, seq + 1)
            self._last[run_id] = position
        return f"{position[0]}-{position[1]}"


def stream_replayer(
    client: redis.Redis, *, retention: int, active_ttl: int
) -> Any:  # relay.resilience.spool.Handler
    """The spool handler that writes a spooled run event to its stream (once)."""
    script = client.register_script(_REPLAY)
    active = max(active_ttl, retention)

    def replay(entry: SpoolEntry) -> None:
        body = entry.body
        written = script(
            keys=[stream_key(str(body["run"]))],
            args=[
                body["id"],
                body["e"],
                body["d"],
                "1" if body.get("f") else "0",
                retention,
                active,
                entry.key,
                SCAN_BACK,
            ],
        )
        if written is None:
            log.warning(
                "spooled run event dropped: the run's stream had ended",
                extra={"action": "stream.replay_after_final", "run_id": body["run"]},
            )
        elif str(written) != body["id"]:
            log.warning(
                "spooled run event written with a new id (the stream had moved past it)",
                extra={"action": "stream.replay_new_id", "run_id": body["run"]},
            )

    return replay
