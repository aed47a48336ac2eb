"""SQLite under gevent: waiting for the write lock never stops the process's other greenlets.

Runs in a child process patched by gevent, as the API's gunicorn workers are. One greenlet holds
the write lock (a transaction left open while it sleeps); another starts a write transaction
through ``Database.transaction()``, and a third ticks. The ticker keeps ticking while the writer
waits, the lock holder gets to commit, and the writer then goes through. SQLite's own busy wait
would hold the only OS thread instead: nothing else runs, the holder never commits, and the
writer fails with "database is locked" after the whole timeout.

Reads (``Database.session()``) do not wait for the writer at all (WAL, deferred BEGIN).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
from gevent import monkey

monkey.patch_all()

import json
import sqlite3
import sys
import time

import gevent
from sqlalchemy import text

from relay.adapters.sql import Database

path = sys.argv[1]
db = Database(f"sqlite:///{path}")
with db.transaction() as session:
    session.execute(text("CREATE TABLE t (x INTEGER)"))

holder = sqlite3.connect(path, isolation_level=None, timeout=0)
holder.execute("BEGIN IMMEDIATE")
holder.execute("INSERT INTO t VALUES (1)")
ticks = []
events = []


def hold() -> None:
    gevent.sleep(0.5)
    events.append("holder commits")
    holder.execute("COMMIT")


def tick() -> None:
    while len(events) < 2:
        ticks.append(time.monotonic())
        gevent.sleep(0.01)


def read() -> None:
    with db.session() as session:
        events.append(("read", session.execute(text("SELECT count(*) FROM t")).scalar()))


def write() -> None:
    with db.transaction() as session:
        session.execute(text("INSERT INTO t VALUES (2)"))
    events.append("writer committed")


started = time.monotonic()
gevent.joinall([gevent.spawn(hold), gevent.spawn(tick), gevent.spawn(write)], timeout=40)
reader = gevent.spawn(read)
reader.join(timeout=5)
with db.session() as session:
    rows = session.execute(text("SELECT x FROM t ORDER BY x")).scalars().all()
print(json.dumps({"events": events, "ticks": len(ticks), "rows": rows,
                  "seconds": time.monotonic() - started}))
"""


def test_a_writer_waiting_for_the_lock_lets_the_other_greenlets_run(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "lock.db")],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["events"][:2] == ["holder commits", "writer committed"], result
    assert result["rows"] == [1, 2]
    # The holder's half second passed with the ticker running (every 10 ms): the loop was free.
    assert result["ticks"] >= 10, result
    assert result["events"][2] == ["read", 2]
