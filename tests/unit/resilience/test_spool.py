"""The local spool: record format, torn records, bounds, order and exactly-once replay."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import redis
from prometheus_client import CollectorRegistry

from relay.resilience.breaker import Breakers
from relay.resilience.spool import (
    HEADER,
    ReplayStopped,
    Spool,
    SpoolCollector,
    SpoolEntry,
    SpoolFull,
    breaker_probe,
    encode_record,
    scan,
)


def entry(n: int, group: str = "run-1") -> SpoolEntry:
    return SpoolEntry(kind="test", key=f"k{n}", group=group, body={"n": n})


class Target:
    """An effect store that applies each key once (what a real handler does) and counts calls."""

    def __init__(self) -> None:
        self.applied: list[int] = []
        self.calls = 0
        self.down = False

    def __call__(self, item: SpoolEntry) -> None:
        self.calls += 1
        if self.down:
            raise redis.ConnectionError("Connection refused")
        if item.body["n"] not in self.applied:
            self.applied.append(item.body["n"])


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.spool"))


# --- format -----------------------------------------------------------------------------------


def test_records_read_back_in_order() -> None:
    data = b"".join(encode_record(entry(n)) for n in range(5))
    found = scan(data)
    assert [r.entry.body["n"] for r in found.records] == [0, 1, 2, 3, 4]
    assert found.torn == 0
    assert found.records[-1].end == len(data)


@pytest.mark.parametrize("cut", [1, HEADER.size - 1, HEADER.size + 3, -1])
def test_a_torn_last_record_is_skipped(cut: int) -> None:
    whole = b"".join(encode_record(entry(n)) for n in range(3))
    last = encode_record(entry(3))
    found = scan(whole + last[:cut])
    assert [r.entry.body["n"] for r in found.records] == [0, 1, 2]
    assert found.torn == 1


def test_a_damaged_record_in_the_middle_leaves_the_others_intact() -> None:
    records = [encode_record(entry(n)) for n in range(4)]
    broken = bytearray(records[1])
    broken[-2] ^= 0xFF  # a flipped byte in the payload: its CRC no longer matches
    found = scan(records[0] + bytes(broken) + records[2] + records[3])
    assert [r.entry.body["n"] for r in found.records] == [0, 2, 3]
    assert found.torn == 1


# --- spool ------------------------------------------------------------------------------------


def test_append_is_owner_only_and_replay_applies_in_order_once(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", interval=600)
    target = Target()
    spool.register("test", target)
    for n in range(5):
        spool.append(entry(n))
    assert spool.pending("run-1")
    assert not spool.pending("run-2")
    [segment] = segments(tmp_path / "spool")
    assert stat.S_IMODE(segment.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "spool").stat().st_mode) == 0o700
    stats = spool.stats()
    assert stats.entries == 5
    assert stats.bytes == segment.stat().st_size
    assert not stats.full

    assert spool.replay() == 5
    assert target.applied == [0, 1, 2, 3, 4]
    assert spool.replay() == 0
    assert target.calls == 5
    assert not spool.pending("run-1")
    assert segments(tmp_path / "spool") == [], "a replayed segment is removed"
    assert spool.stats().entries == 0
    assert spool.stats().bytes == 0


def test_replay_stops_at_an_outage_and_resumes_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path, interval=600)
    target = Target()
    spool.register("test", target)
    for n in range(3):
        spool.append(entry(n))
    target.down = True
    assert spool.replay() == 0
    spool.append(entry(3))
    target.down = False
    assert spool.replay() == 4
    assert target.applied == [0, 1, 2, 3]


def test_a_handler_that_stops_replay_keeps_its_entry_first(tmp_path: Path) -> None:
    spool = Spool(tmp_path, interval=600)
    seen: list[int] = []

    def handler(item: SpoolEntry) -> None:
        if item.body["n"] == 1 and not seen.count(-1):
            seen.append(-1)
            raise ReplayStopped()
        seen.append(item.body["n"])

    spool.register("test", handler)
    for n in range(3):
        spool.append(entry(n))
    assert spool.replay() == 1
    assert spool.replay() == 2
    assert seen == [0, -1, 1, 2]


def test_the_spool_is_bounded_and_alerts_once_when_full(tmp_path: Path) -> None:
    alerts = []
    size = len(encode_record(entry(0))) + 2  # the time stamp's digits vary a little
    spool = Spool(tmp_path, interval=600, max_bytes=size * 3, on_full=alerts.append)
    target = Target()
    spool.register("test", target)
    for n in range(3):
        spool.append(entry(n))
    for n in (3, 4):
        with pytest.raises(SpoolFull) as raised:
            spool.append(entry(n))
    assert raised.value.status == 503
    assert len(alerts) == 1
    assert alerts[0].full
    assert alerts[0].entries == 3
    assert spool.stats().full

    registry = CollectorRegistry()
    registry.register(SpoolCollector(spool))
    assert registry.get_sample_value("relay_spool_full") == 1
    assert registry.get_sample_value("relay_spool_entries") == 3
    [segment] = segments(tmp_path)
    assert registry.get_sample_value("relay_spool_bytes") == segment.stat().st_size

    assert spool.replay() == 3
    assert not spool.stats().full
    spool.append(entry(5))
    assert registry.get_sample_value("relay_spool_full") == 0
    assert registry.get_sample_value("relay_spool_entries") == 1


def _write_orphan(directory: Path, name: str, data: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(data)
    return path


def test_a_dead_process_segment_with_a_torn_tail_is_replayed_then_removed(tmp_path: Path) -> None:
    records = b"".join(encode_record(entry(n)) for n in range(4))
    torn = encode_record(entry(4))[:-5]
    _write_orphan(tmp_path, "00000000000000000001-999999-1.spool", records + torn)
    spool = Spool(tmp_path, interval=600)
    target = Target()
    spool.register("test", target)
    assert spool.stats(rescan=True).entries == 4
    assert spool.replay() == 4
    assert target.applied == [0, 1, 2, 3]
    assert spool.stats().torn == 1
    assert list(tmp_path.iterdir()) == []


CRASH_MID_REPLAY = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from relay.resilience.spool import Spool

    spool = Spool(Path(sys.argv[1]), interval=600)
    effects = Path(sys.argv[2])

    def handler(item):
        with open(effects, "a") as out:
            out.write(item.key + "\\n")
        if item.key == "k2":
            os._exit(9)  # killed after applying k2, before its cursor is written

    spool.register("test", handler)
    spool.replay()
    """
)


def test_a_crash_mid_replay_applies_no_entry_twice(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    _write_orphan(
        directory,
        "00000000000000000001-999999-1.spool",
        b"".join(encode_record(entry(n)) for n in range(5)),
    )
    effects = tmp_path / "effects"
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH_MID_REPLAY, str(directory), str(effects)], timeout=60
    )
    assert crashed.returncode == 9
    assert effects.read_text().split() == ["k0", "k1", "k2"]

    # The next process resumes after the last entry whose cursor was written: only k2 is offered
    # again, and the handler's idempotency key keeps it from applying twice.
    offered: list[str] = []
    applied = set(effects.read_text().split())

    def handler(item: SpoolEntry) -> None:
        offered.append(item.key)
        if item.key not in applied:
            applied.add(item.key)
            with open(effects, "a") as out:
                out.write(item.key + "\n")

    spool = Spool(directory, interval=600)
    spool.register("test", handler)
    assert spool.replay() == 3
    assert offered == ["k2", "k3", "k4"]
    assert effects.read_text().split() == ["k0", "k1", "k2", "k3", "k4"]


HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from relay.resilience.spool import Spool, SpoolEntry

    spool = Spool(Path(sys.argv[1]), interval=600)
    spool.append(SpoolEntry(kind="test", key="other", body={"n": 100}))
    print("spooled", flush=True)
    sys.stdin.readline()
    """
)


def test_a_live_process_segment_is_left_to_its_owner_until_it_dies(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdin is not None
        assert holder.stdout.readline().strip() == "spooled"
        spool = Spool(tmp_path, interval=600)
        target = Target()
        spool.register("test", target)
        spool.append(entry(1))
        assert spool.replay() == 1
        assert target.applied == [1], "the live holder's segment is its own"
        assert spool.stats(rescan=True).entries == 1
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(30)
        assert spool.replay() == 1
        assert target.applied == [1, 100]
        assert list(tmp_path.glob("*.spool")) == []
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_replay_waits_for_the_breaker_and_a_probe(tmp_path: Path) -> None:
    breakers = Breakers(fail_max=2, reset_timeout=60)
    up = {"value": False}
    pings = []

    def ping() -> bool:
        pings.append(1)
        if not up["value"]:
            raise redis.ConnectionError("Connection refused")
        return True

    spool = Spool(tmp_path, interval=600, ready=breaker_probe(breakers, "redis", ping))
    target = Target()
    spool.register("test", target)
    spool.append(entry(0))
    assert spool.replay_when_ready() == 0
    assert spool.replay_when_ready() == 0
    assert breakers.state("redis") == "open"
    up["value"] = True
    assert spool.replay_when_ready() == 0, "an open circuit is not probed"
    assert len(pings) == 2
    assert target.calls == 0


def test_a_forked_child_writes_a_segment_of_its_own(tmp_path: Path) -> None:
    spool = Spool(tmp_path, interval=600)
    spool.append(entry(0))
    pid = os.fork()
    if pid == 0:
        try:
            spool.append(entry(1, group="child"))
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert len(segments(tmp_path)) == 2
    target = Target()
    spool.register("test", target)
    assert spool.replay() == 2
    assert sorted(target.applied) == [0, 1]
