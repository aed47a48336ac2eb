"""SQL database: one engine per process, a session per request and per task.

Services own their transaction through ``Database.transaction()``; nothing commits implicitly.
SQLite (the embedded default) runs in WAL mode. ``transaction()`` opens ``BEGIN IMMEDIATE`` (a read
that turns into a write then waits for the lock up front instead of failing with "database is
locked"); ``session()`` is for reads and opens a deferred ``BEGIN``, which in WAL mode never waits
for a writer.

Waiting for the write lock must not stop a gevent process: SQLite's own busy handler sleeps inside
the C call, which holds the only OS thread of a gunicorn gevent worker (every other request of the
process, SSE streams included, stalls behind it). So the driver's busy timeout is short and
``BEGIN IMMEDIATE`` is retried from Python with ``time.sleep``, which gevent makes cooperative;
the total wait is bounded as before (``LOCK_WAIT``).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy import exc as exc_module
from sqlalchemy.orm import Session, sessionmaker

from relay.adapters import savepoint
from relay.adapters.private_files import private_dir, private_file, sqlite_path
from relay.config import Settings

log = logging.getLogger(__name__)

# Longest total wait for SQLite's write lock before "database is locked" reaches the caller.
LOCK_WAIT = 30.0
# The driver's own (blocking) busy wait per attempt: short, so a waiting gevent process stays
# responsive; between attempts the wait is a cooperative sleep.
BUSY_TIMEOUT_MS = 5
# A pooled PostgreSQL connection idle for longer than this is pinged before use (a server restart
# or an idle timeout may have closed it). A connection in steady use is not: a ping per checkout
# is a round trip per task. A busy connection the server dropped fails its statement once, the
# pool is invalidated, and the caller's outage handling (a 503, a task retry) takes over.
PING_IDLE_SECONDS = 10.0
_IDLE_SINCE = "relay_idle_since"
_READ_OPTION = "relay_read_only"
_AFTER_COMMIT = "relay_after_commit"
_AFTER_COMMIT_HOOKED = "relay_after_commit_hooked"


class Database:
    """Engine and session factory for one process."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        echo: bool = False,
        ping_idle: float = PING_IDLE_SECONDS,
    ) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size)
            # An unreachable server fails a request in seconds (503), not after the OS's
            # TCP timeout; a full pool likewise (sqlalchemy's TimeoutError is an outage too).
            kwargs.update(connect_args={"connect_timeout": 5}, pool_timeout=10)
        self.engine: Engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        else:
            _ping_when_idle(self.engine, ping_idle)
        # The after-commit hooks are listened for once per factory, not once per session: a
        # per-session ``event.listen`` costs more than a small transaction.
        hooked = {_AFTER_COMMIT_HOOKED: True}
        self.sessions = sessionmaker(self.engine, expire_on_commit=False, info=hooked)
        # Reads: on SQLite a deferred BEGIN (WAL readers never wait for the writer).
        self.read_sessions = sessionmaker(
            self.engine.execution_options(**{_READ_OPTION: True}),
            expire_on_commit=False,
            info=hooked,
        )
        for factory in (self.sessions, self.read_sessions):
            event.listen(factory, "after_commit", _run_after_commit)
            event.listen(factory, "after_transaction_end", _drop_after_rollback)
            savepoint.install(factory)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: commit on success, roll back on any exception."""
        with self.sessions() as session, session.begin():
            yield session

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session for reads (on SQLite its transactions never take the write lock)."""
        with self.read_sessions() as session:
            yield session

    def ping(self) -> None:
        """Run ``SELECT 1``; raises when the database is unreachable."""
        with self.engine.connect().execution_options(**{_READ_OPTION: True}) as conn:
            conn.execute(text("SELECT 1"))

    def after_fork(self) -> None:
        """Drop connections inherited from a parent process without closing the parent's."""
        self.engine.dispose(close=False)

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get(_READ_OPTION):
            conn.exec_driver_sql("BEGIN")
            return
        begin_immediate(conn.connection.dbapi_connection)


def _ping_when_idle(engine: Engine, idle: float) -> None:
    """Ping a pooled connection on checkout only when it sat idle for more than ``idle`` seconds;
    a dead one is replaced by a fresh connection (the pool retries on ``DisconnectionError``)."""

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_IDLE_SINCE)
        if since is None or time.monotonic() - since <= idle:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            raise exc_module.DisconnectionError("idle connection is gone") from exc
        if not alive:
            raise exc_module.DisconnectionError("idle connection is gone")


def begin_immediate(dbapi_conn: Any, wait: float = LOCK_WAIT) -> None:
    """``BEGIN IMMEDIATE``, retried with cooperative sleeps while another writer holds the lock."""
    deadline = time.monotonic() + wait
    pause = 0.001
    while True:
        try:
            dbapi_conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() + pause > deadline:
                raise
        # time.sleep, not a busy loop: under gevent it yields to the other greenlets (the lock
        # holder among them, when it is in this process).
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` once ``session``'s outermost transaction has committed; never on rollback.

    For the Redis or network side of a unit of work (a cache write, a counter flush): it must not
    run inside the transaction, which would hold its locks (on SQLite, the one write lock) across
    the round trip. A callback that fails is logged; the commit has happened and stands.
    """
    session.info.setdefault(_AFTER_COMMIT, []).append(callback)
    if not session.info.get(_AFTER_COMMIT_HOOKED):
        session.info[_AFTER_COMMIT_HOOKED] = True
        event.listen(session, "after_commit", _run_after_commit)
        event.listen(session, "after_transaction_end", _drop_after_rollback)


def _run_after_commit(session: Session) -> None:
    if session.get_nested_transaction() is not None:
        return  # a savepoint was released; the outer transaction is still open
    for callback in session.info.pop(_AFTER_COMMIT, []):
        try:
            callback()
        except Exception:
            log.exception("after-commit callback failed", extra={"action": "db.after_commit"})


def _drop_after_rollback(session: Session, transaction: Any) -> None:
    if transaction.parent is None:
        session.info.pop(_AFTER_COMMIT, None)


def init_db(settings: Settings) -> Database:
    """Create the process's ``Database`` (SQLite under var/ unless ``RELAY_DATABASE_URL``)."""
    if settings.database.url is None:
        private_dir(settings.var_dir)
    db_file = sqlite_path(settings.database_url)
    if db_file is not None:
        # Created owner-only before SQLite opens it; its -wal and -shm files take its mode.
        private_file(db_file)
    return Database(
        settings.database_url, pool_size=settings.database.pool_size, echo=settings.database.echo
    )
