"""Database migrations (Alembic), shipped in the package so ``relay migrate`` works from a wheel.

There is no ``alembic.ini``: :func:`alembic_config` builds the configuration in code, with the
script location set to this package's directory. To write a new revision against a database at
head, run ``alembic.command.revision(alembic_config(url), message="...", autogenerate=True)``
(see :func:`revision`) and tidy the generated file by hand.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, pool

SCRIPT_LOCATION = Path(__file__).resolve().parent


def alembic_config(url: str) -> Config:
    """An Alembic configuration for the database at ``url`` (no ini file needed)."""
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    # ConfigParser interpolates "%": escape it, as URL-encoded passwords contain it.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    # env.py prefers this unescaped copy.
    config.attributes["url"] = url
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision``."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    """Migrate the database at ``url`` down to ``revision`` (``base`` drops every table)."""
    command.downgrade(alembic_config(url), revision)


def current(url: str) -> str | None:
    """The revision the database at ``url`` is at, or None when it has never been migrated."""
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def head() -> str | None:
    """The newest revision shipped with this version of relay."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def revision(url: str, message: str, *, autogenerate: bool = True) -> None:
    """Write a new revision file comparing the models with the database at ``url`` (at head)."""
    command.revision(alembic_config(url), message=message, autogenerate=autogenerate)


__all__ = [
    "SCRIPT_LOCATION",
    "alembic_config",
    "current",
    "downgrade",
    "head",
    "revision",
    "upgrade",
]
