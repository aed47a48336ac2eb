"""A run's channel: one append-only stream of events per run, read from any id onwards.

:class:`RedisStreamChannel` keeps each run in one Redis Stream. The entry id that ``XADD``
assigns is the event's SSE ``id:``, so a client that reconnects with ``Last-Event-ID`` continues
after exactly that entry, on any API process. The last event of a run is marked *final*; once it
is there the channel refuses further appends (an atomic script checks and appends), so a run has
exactly one terminal event even when the worker and the reaper race to write it. While a run
is active its stream lives ``active_ttl`` seconds after each event; after the final event it
lives ``retention`` seconds.

:class:`InMemoryRunChannel` has the same behaviour in one process, for unit tests.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol, cast

import redis

START = "0-0"
"""Read a run from its first event."""


@dataclass(frozen=True)
class StreamEntry:
    """One event of a run's stream: its id, event name, JSON data, and whether it is the last."""

    id: str
    event: str
    data: str
    final: bool = False


class RunChannel(Protocol):
    """Appends to and reads from per-run event streams."""

    def append(self, run_id: str, event: str, data: str, *, final: bool = False) -> str | None:
        """Append an event and return its id; None when the run's final event is already there."""
        ...

    def read(
        self, run_id: str, after: str, *, block: float = 0.0, count: int = 500
    ) -> list[StreamEntry]:
        """Entries after id ``after`` (oldest first), waiting up to ``block`` seconds for one."""
        ...

    def last(self, run_id: str) -> StreamEntry | None:
        """The newest entry of the run (None when the stream is empty or expired)."""
        ...


def stream_key(run_id: str) -> str:
    """The Redis key of a run's stream (hash-tagged with the run id for Redis Cluster)."""
    return f"relay:run:{{{run_id}}}:events"


def parse_id(entry_id: str) -> tuple[int, int]:
    """A stream id as a comparable pair; ValueError when it is not ``<ms>-<seq>``."""
    millis, sep, seq = entry_id.partition("-")
    if not (millis.isdigit() and (not sep or seq.isdigit())):
        raise ValueError(f"not a stream id: {entry_id!r}")
    return int(millis), int(seq or 0)


# KEYS[1] stream; ARGV: event, data, final (0/1), retention, active ttl.
_APPEND = """
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if last[1] then
  local fields = last[1][2]
  for i = 1, #fields, 2 do
    if fields[i] == 'f' then return false end
  end
end
local id
if ARGV[3] == '1' then
  id = redis.call('XADD', KEYS[1], '*', 'e', ARGV[1], 'd', ARGV[2], 'f', '1')
  redis.call('EXPIRE', KEYS[1], ARGV[4])
else
  id = redis.call('XADD', KEYS[1], '*', 'e', ARGV[1], 'd', ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[5])
end
return id
"""


def _entry(entry_id: str, fields: dict[str, str]) -> StreamEntry:
    return StreamEntry(
        id=entry_id, event=fields.get("e", ""), data=fields.get("d", "{}"), final="f" in fields
    )


class RedisStreamChannel:
    """:class:`RunChannel` on Redis Streams (one stream per run)."""

    def __init__(self, client: redis.Redis, *, retention: int, active_ttl: int) -> None:
        self.client = client
        self.retention = retention
        self.active_ttl = max(active_ttl, retention)
        self._append = client.register_script(_APPEND)

    def append(self, run_id: str, event: str, data: str, *, final: bool = False) -> str | None:
        result = self._append(
            keys=[stream_key(run_id)],
            args=[event, data, "1" if final else "0", self.retention, self.active_ttl],
        )
        return None if result is None else str(result)

    def read(
        self, run_id: str, after: str, *, block: float = 0.0, count: int = 500
    ) -> list[StreamEntry]:
        millis = int(block * 1000)
        reply = cast(
            "list[Any] | None",
            self.client.xread(
                {stream_key(run_id): after}, count=count, block=millis if millis > 0 else None
            ),
        )
        if not reply:
            return []
        return [_entry(entry_id, fields) for entry_id, fields in reply[0][1]]

    def last(self, run_id: str) -> StreamEntry | None:
        found = cast("list[Any]", self.client.xrevrange(stream_key(run_id), count=1))
        return _entry(*found[0]) if found else None

    def ttl(self, run_id: str) -> int:
        """Seconds the run's stream still lives (-2: gone, -1: no expiry)."""
        return int(self.client.ttl(stream_key(run_id)))


class InMemoryRunChannel:
    """:class:`RunChannel` in one process (thread-safe; blocking reads wait on a condition)."""

    def __init__(self) -> None:
        self._streams: dict[str, list[StreamEntry]] = {}
        self._changed = threading.Condition()
        self._clock = 0

    def append(self, run_id: str, event: str, data: str, *, final: bool = False) -> str | None:
        with self._changed:
            entries = self._streams.setdefault(run_id, [])
            if entries and entries[-1].final:
                return None
            self._clock += 1
            entry = StreamEntry(f"{self._clock}-0", event, data, final)
            entries.append(entry)
            self._changed.notify_all()
            return entry.id

    def read(
        self, run_id: str, after: str, *, block: float = 0.0, count: int = 500
    ) -> list[StreamEntry]:
        position = parse_id(after)
        deadline = time.monotonic() + block
        with self._changed:
            while True:
                newer = [e for e in self._streams.get(run_id, []) if parse_id(e.id) > position][
                    :count
                ]
                remaining = deadline - time.monotonic()
                if newer or remaining <= 0:
                    return newer
                self._changed.wait(remaining)

    def last(self, run_id: str) -> StreamEntry | None:
        with self._changed:
            entries = self._streams.get(run_id)
            return entries[-1] if entries else None

    def drop(self, run_id: str) -> None:
        """Forget a run's stream (what expiry does in Redis)."""
        with self._changed:
            self._streams.pop(run_id, None)
