"""SQL database: one engine per process, a session per request and per task.

Services own their transaction through ``Database.transaction()``; nothing commits implicitly.
SQLite (the embedded default) runs in WAL mode and opens write transactions with
``BEGIN IMMEDIATE`` so that a read that turns into a write waits for the lock instead of failing
with "database is locked".
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from relay.config import Settings
from relay.extensions.private_files import private_dir, private_file, sqlite_path


class Database:
    """Engine and session factory for one process."""

    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
        self.engine: Engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: commit on success, roll back on any exception."""
        with self.sessions() as session, session.begin():
            yield session

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transactions the caller manages."""
        with self.sessions() as session:
            yield session

    def ping(self) -> None:
        """Run ``SELECT 1``; raises when the database is unreachable."""
        with self.engine.connect() as conn:
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
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


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
