"""The local spool: what must not be lost while Redis or the broker is away, on disk until replay.

Writers (the run-stream channel, the event counters) hand an entry to :meth:`Spool.append` when
their dependency is unreachable. Each process appends to a segment file of its own under
``var/spool`` (owner-only), one record per entry, ``fsync``'ed before ``append`` returns, so an
entry the caller was told is spooled survives a crash of the process or the host.

A record is ``b"RS"`` + big-endian length + CRC-32 of the payload + the payload (JSON: kind,
key, group, time, body). A process killed in the middle of a write leaves a torn record at the
end of its segment: the reader finds a short header, a short payload or a CRC that does not
match, skips it (scanning for the next valid record, should anything follow) and counts it, and
never lets it corrupt the records around it.

Replay (:meth:`Spool.replay`) applies the entries in order, oldest segment first, through one
handler per kind. After each applied entry its end offset is written to the segment's cursor
(``<segment>.pos``; fsync'ed at the end of each pass), so a replay interrupted by a crash
continues after the last entry it finished. An entry offered again (applied, then the process
killed before its cursor write; a few more after a host crash) is made harmless by its handler,
which applies each idempotency key once: a run-stream entry carries its spool key into the
stream and is skipped when it is already there; a counter batch is guarded by a marker set in
the same Redis script as the counts.

A segment belongs to the process that writes it, which holds an exclusive ``flock`` on it; the
segments of processes that died (the lock is free) are replayed by whichever process replays
next, then deleted. The spool is bounded (``max_bytes`` of entries not yet replayed): when it
is full, ``append`` raises :class:`SpoolFull` and ``on_full`` is called once per filling.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import struct
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from relay.adapters.private_files import FILE_MODE, private_dir
from relay.background import Background
from relay.errors import InfrastructureError
from relay.resilience.breaker import Breakers
from relay.resilience.outages import is_outage

log = logging.getLogger(__name__)

MAGIC = b"RS"
HEADER = struct.Struct(">2sII")  # magic, payload length, CRC-32 of the payload
MAX_RECORD = 16 * 1024 * 1024
SEGMENT_SUFFIX = ".spool"
CURSOR_SUFFIX = ".pos"
CURSOR = struct.Struct(">Q")


class SpoolFull(InfrastructureError):
    """The spool holds ``max_bytes`` of entries not yet replayed: nothing more is taken."""

    code = "spool_full"


class ReplayStopped(Exception):
    """A handler found its dependency still away: replay stops and resumes on a later tick."""


@dataclass(frozen=True)
class SpoolEntry:
    """One spooled item: ``kind`` picks the replay handler, ``key`` is its idempotency key,
    ``group`` orders related entries (a run id), ``body`` is the handler's input."""

    kind: str
    key: str
    body: dict[str, Any]
    group: str = ""
    at: float = field(default_factory=time.time)

    def payload(self) -> bytes:
        return json.dumps(
            {"k": self.kind, "key": self.key, "g": self.group, "at": self.at, "b": self.body},
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_payload(cls, data: bytes) -> SpoolEntry:
        raw = json.loads(data)
        return cls(
            kind=str(raw["k"]),
            key=str(raw["key"]),
            body=dict(raw["b"]),
            group=str(raw.get("g", "")),
            at=float(raw["at"]),
        )


def encode_record(entry: SpoolEntry) -> bytes:
    """One record as written to a segment."""
    payload = entry.payload()
    if len(payload) > MAX_RECORD:
        raise ValueError(f"a spool entry holds at most {MAX_RECORD} bytes, not {len(payload)}")
    return HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


@dataclass(frozen=True)
class Record:
    """A record read back: the entry and the offsets it spans in its segment."""

    entry: SpoolEntry
    start: int
    end: int


@dataclass
class Scan:
    """What reading a segment from an offset found."""

    records: list[Record]
    torn: int = 0  # damaged spans skipped (a torn write, a flipped byte)
    end: int = 0  # offset after the last byte examined


def _valid_at(data: bytes, offset: int) -> Record | None:
    if len(data) - offset < HEADER.size:
        return None
    magic, length, crc = HEADER.unpack_from(data, offset)
    if magic != MAGIC or length > MAX_RECORD:
        return None
    start, stop = offset + HEADER.size, offset + HEADER.size + length
    if stop > len(data):
        return None
    payload = data[start:stop]
    if zlib.crc32(payload) != crc:
        return None
    try:
        entry = SpoolEntry.from_payload(payload)
    except (ValueError, KeyError, TypeError):
        return None
    return Record(entry, offset, stop)


def scan(data: bytes, offset: int = 0) -> Scan:
    """Every valid record of ``data`` from ``offset``; damaged spans are skipped and counted."""
    found = Scan([], 0, len(data))
    position = offset
    while position < len(data):
        record = _valid_at(data, position)
        if record is not None:
            found.records.append(record)
            position = record.end
            continue
        # Damaged from here: resume at the next offset that holds a whole valid record.
        found.torn += 1
        position = data.find(MAGIC, position + 1)
        while position != -1 and _valid_at(data, position) is None:
            position = data.find(MAGIC, position + 1)
        if position == -1:
            break
    return found


class Handler(Protocol):
    """Applies one entry; raises :class:`ReplayStopped` (or an outage) to retry it later."""

    def __call__(self, entry: SpoolEntry) -> None: ...


@dataclass(frozen=True)
class SpoolStats:
    """What waits for replay across every segment under the spool's directory."""

    bytes: int
    entries: int
    oldest_age: float
    full: bool
    max_bytes: int
    torn: int = 0

    @property
    def fill(self) -> float:
        return self.bytes / self.max_bytes if self.max_bytes else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "bytes": self.bytes,
            "entries": self.entries,
            "oldest_age_s": round(self.oldest_age, 1),
            "full": self.full,
            "max_bytes": self.max_bytes,
            "torn_records": self.torn,
        }


def _read_cursor(path: Path) -> int:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0
    return CURSOR.unpack(data)[0] if len(data) == CURSOR.size else 0


class _Cursor:
    """A segment's replay position: rewritten in place after every applied entry (it survives
    the process being killed), fsync'ed when the replay pass ends (a host crash can only move it
    back, and the handlers apply a key once)."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_CREAT | os.O_WRONLY, FILE_MODE)

    def write(self, offset: int) -> None:
        os.pwrite(self.fd, CURSOR.pack(offset), 0)

    def close(self) -> None:
        try:
            os.fsync(self.fd)
        finally:
            os.close(self.fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Segment:
    """This process's open segment: the file, its lock, and what in it waits for replay."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.cursor = path.with_name(path.name + CURSOR_SUFFIX)
        self.fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, FILE_MODE)
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.pid = os.getpid()
        self.size = 0
        self.replayed = 0
        self.pending: deque[tuple[int, str, float]] = deque()  # (end offset, group, at)

    def close(self) -> None:
        os.close(self.fd)


class Spool:
    """The spool of one process (segments under ``directory``; see the module's text)."""

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int = 64 * 1024 * 1024,
        on_full: Callable[[SpoolStats], None] | None = None,
        ready: Callable[[], bool] = lambda: True,
        background: Background | None = None,
        interval: float = 2.0,
    ) -> None:
        """``ready``: whether replay may try now (see :func:`breaker_probe`); replay runs every
        ``interval`` seconds on a helper of ``background`` once anything is spooled."""
        self.directory = directory
        self.max_bytes = max_bytes
        self.on_full = on_full
        self.ready = ready
        owner = background if background is not None else Background()
        self._job = owner.periodic("spool.replay", self.replay_when_ready, interval)
        self.handlers: dict[str, Handler] = {}
        # Held by appends and by replay: a group's entries are replayed strictly in order, and
        # a writer that checks ``pending(group)`` under it cannot overtake its own spooled past.
        self.lock = threading.RLock()
        self._segment: _Segment | None = None
        self._others_bytes = 0
        self._others_entries = 0
        self._others_oldest: float | None = None
        self._torn = 0
        self._full = False
        self._seq = 0

    def register(self, kind: str, handler: Handler) -> None:
        """The handler that replays entries of ``kind``."""
        self.handlers[kind] = handler

    # --- writing --------------------------------------------------------------------------------

    def append(self, entry: SpoolEntry) -> None:
        """Write ``entry`` durably (fsync'ed); :class:`SpoolFull` when the bound is reached."""
        record = encode_record(entry)
        with self.lock:
            segment = self._own_segment()
            waiting = (segment.size - segment.replayed) + self._others_bytes
            if waiting + len(record) > self.max_bytes:
                self._filled()
                raise SpoolFull(
                    f"the local spool is full ({waiting} of {self.max_bytes} bytes wait for "
                    "replay); the entry was not kept",
                    details={"retry_after": 5, "kind": entry.kind},
                )
            try:
                written = os.write(segment.fd, record)
                if written != len(record):
                    raise OSError(f"short write ({written} of {len(record)} bytes)")
                os.fdatasync(segment.fd)
            except OSError:
                # Leave no torn record behind a failure we survived (the disk is full...).
                os.ftruncate(segment.fd, segment.size)
                raise
            segment.size += len(record)
            segment.pending.append((segment.size, entry.group, entry.at))
        log.warning(
            "spooled locally while its dependency is unreachable",
            extra={"action": "spool.append", "kind": entry.kind, "spool_group": entry.group},
        )
        self._job.ensure()

    def pending(self, group: str) -> bool:
        """Whether this process spooled entries of ``group`` that are not replayed yet."""
        with self.lock:
            segment = self._segment
            if segment is None or segment.pid != os.getpid():
                return False
            return any(g == group for _, g, _ in segment.pending)

    def _own_segment(self) -> _Segment:
        segment = self._segment
        if segment is not None and segment.pid == os.getpid():
            return segment
        # First append of this process (or first after a fork: the parent's file is not ours).
        private_dir(self.directory)
        self._seq += 1
        name = f"{time.time_ns():020d}-{os.getpid()}-{self._seq}{SEGMENT_SUFFIX}"
        segment = _Segment(self.directory / name)
        _fsync_dir(self.directory)
        self._segment = segment
        return segment

    def _filled(self) -> None:
        if self._full:
            return
        self._full = True
        stats = self.stats()
        log.error(
            "local spool is full; new entries are refused until replay frees room",
            extra={"action": "spool.full", **stats.as_dict()},
        )
        if self.on_full is not None:
            try:
                self.on_full(stats)
            except Exception:
                log.exception("spool full alert failed", extra={"action": "spool.alert_failed"})

    # --- replay ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the replay helper in this process if segments wait (left by a dead process)."""
        if self.has_backlog():
            self._job.ensure()

    def replay_when_ready(self) -> int:
        """One replay step of the helper: nothing to do, dependency not ready, or replay."""
        if not self.has_backlog() or not self.ready():
            return 0
        applied = self.replay()
        if applied:
            log.warning(
                "replayed spooled entries",
                extra={"action": "spool.replayed", "count": applied},
            )
        return applied

    def replay(self) -> int:
        """Apply every waiting entry in order; returns how many were applied.

        Stops at the first entry whose dependency is still away (it stays first in line).
        """
        applied = 0
        with self.lock:
            others = [path for path in self._segments() if not self._is_own(path)]
            for path in others:
                done, finished = self._replay_orphan(path)
                applied += done
                if not finished:
                    self._refresh_others()
                    return applied
            segment = self._segment
            if segment is not None and segment.pid == os.getpid():
                applied += self._replay_own(segment)
            self._refresh_others()
            if self._full and self._waiting_bytes() < self.max_bytes // 2:
                self._full = False
                log.warning("local spool has room again", extra={"action": "spool.room"})
        return applied

    def _replay_own(self, segment: _Segment) -> int:
        if not segment.pending:
            return 0
        data = _read_from(segment.path, segment.replayed)
        found = scan(data)
        self._torn += found.torn
        applied = 0
        cursor = _Cursor(segment.cursor)
        try:
            for record in found.records:
                if not self._apply(record.entry):
                    break
                segment.replayed += record.end - record.start
                cursor.write(segment.replayed)
                segment.pending.popleft()
                applied += 1
        finally:
            cursor.close()
        if segment.replayed >= segment.size:
            # All of it is applied: start a new file next time, so the spool never grows.
            self._segment = None
            segment.close()
            _remove(segment.path, segment.cursor)
        return applied

    def _replay_orphan(self, path: Path) -> tuple[int, bool]:
        """Replay a dead process's segment; (applied, whether it is done and removed)."""
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return 0, True
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0, True  # its writer lives (another process replays it)
            cursor = path.with_name(path.name + CURSOR_SUFFIX)
            offset = _read_cursor(cursor)
            found = scan(_read_from(path, offset))
            if found.torn:
                self._torn += found.torn
                log.warning(
                    "skipped damaged spool records (a write cut short by a crash)",
                    extra={"action": "spool.torn", "segment": path.name, "count": found.torn},
                )
            applied = 0
            position = _Cursor(cursor)
            try:
                for record in found.records:
                    if not self._apply(record.entry):
                        return applied, False
                    position.write(offset + record.end)
                    applied += 1
            finally:
                position.close()
            _remove(path, cursor)
            return applied, True
        finally:
            os.close(fd)

    def _apply(self, entry: SpoolEntry) -> bool:
        handler = self.handlers.get(entry.kind)
        if handler is None:
            log.error(
                "no replay handler for a spooled entry; left in the spool",
                extra={"action": "spool.no_handler", "kind": entry.kind},
            )
            return False
        try:
            handler(entry)
        except ReplayStopped:
            return False
        except Exception as exc:
            if is_outage(exc):
                return False
            # An entry that can never apply must not block everything behind it forever.
            log.exception(
                "spooled entry could not be applied; dropped",
                extra={"action": "spool.dropped", "kind": entry.kind, "spool_key": entry.key},
            )
        return True

    # --- state ----------------------------------------------------------------------------------

    def _segments(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob(f"*{SEGMENT_SUFFIX}"))

    def _is_own(self, path: Path) -> bool:
        segment = self._segment
        return segment is not None and segment.pid == os.getpid() and segment.path == path

    def _refresh_others(self) -> None:
        """Re-measure the segments of other processes (live or dead)."""
        total = entries = 0
        oldest: float | None = None
        for path in self._segments():
            if self._is_own(path):
                continue
            cursor = path.with_name(path.name + CURSOR_SUFFIX)
            try:
                found = scan(_read_from(path, _read_cursor(cursor)))
            except FileNotFoundError:
                continue
            total += sum(r.end - r.start for r in found.records)
            entries += len(found.records)
            if found.records:
                first = found.records[0].entry.at
                oldest = first if oldest is None else min(oldest, first)
        self._others_bytes, self._others_entries, self._others_oldest = total, entries, oldest

    def _waiting_bytes(self) -> int:
        segment = self._segment
        own = 0
        if segment is not None and segment.pid == os.getpid():
            own = segment.size - segment.replayed
        return own + self._others_bytes

    def has_backlog(self) -> bool:
        """Whether any segment is on disk (this process's or one left by another)."""
        return bool(self._segments())

    def stats(self, *, rescan: bool = False) -> SpoolStats:
        """Bytes and entries waiting, the oldest entry's age, and whether the spool is full."""
        with self.lock:
            if rescan:
                self._refresh_others()
            segment = self._segment
            entries, oldest = self._others_entries, self._others_oldest
            if segment is not None and segment.pid == os.getpid() and segment.pending:
                entries += len(segment.pending)
                first = segment.pending[0][2]
                oldest = first if oldest is None else min(oldest, first)
            return SpoolStats(
                bytes=self._waiting_bytes(),
                entries=entries,
                oldest_age=0.0 if oldest is None else max(0.0, time.time() - oldest),
                full=self._full,
                max_bytes=self.max_bytes,
                torn=self._torn,
            )

    def entries(self) -> Iterator[SpoolEntry]:
        """Every waiting entry, in replay order (for ``relay`` tools and tests)."""
        with self.lock:
            for path in self._segments():
                cursor = path.with_name(path.name + CURSOR_SUFFIX)
                for record in scan(_read_from(path, _read_cursor(cursor))).records:
                    yield record.entry


def _read_from(path: Path, offset: int) -> bytes:
    with open(path, "rb") as file:
        file.seek(offset)
        return file.read()


def _remove(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def breaker_probe(
    breakers: Breakers, circuit: str, ping: Callable[[], object]
) -> Callable[[], bool]:
    """A replay gate: ``ping`` through breaker ``circuit``. While the circuit is open the ping is
    not sent at all (False at once); after its reset timeout the ping is the half-open trial that
    closes it again; a failed ping counts towards opening it."""

    def ready() -> bool:
        try:
            breakers.call(circuit, ping)
        except Exception as exc:
            if is_outage(exc):
                return False
            raise
        return True

    return ready


class SpoolCollector(Collector):
    """The spool's state, read at scrape time."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool

    def collect(self) -> Iterator[Any]:
        stats = self.spool.stats()
        for name, help_text, value in (
            ("relay_spool_bytes", "Bytes of spooled entries waiting for replay", stats.bytes),
            ("relay_spool_entries", "Spooled entries waiting for replay", stats.entries),
            (
                "relay_spool_oldest_age_seconds",
                "Age of the oldest spooled entry waiting for replay",
                stats.oldest_age,
            ),
            ("relay_spool_full", "1 while the local spool refuses entries", int(stats.full)),
        ):
            yield GaugeMetricFamily(name, help_text, value=value)
