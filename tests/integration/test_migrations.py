"""The shipped migrations build exactly the schema the models describe, and tear it down again.

Runs on SQLite (a file under tmp_path) and, when the suite runs on PostgreSQL
(``RELAY_DATABASE_URL`` set), on a dedicated throw-away database on that server, so that other
tests using the configured database are never clobbered. On embedded defaults no shared server is
touched.
"""

from __future__ import annotations

import fnmatch
import os
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect, make_url, pool, text
from sqlalchemy.exc import IntegrityError

from relay import migrations
from relay.models import Base
from tests.services import require

EXPECTED_TABLES = set(Base.metadata.tables)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'relay.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    configured = os.environ.get("RELAY_DATABASE_URL", "")
    if not configured.startswith("postgresql"):
        pytest.skip("PostgreSQL migrations run when RELAY_DATABASE_URL names a PostgreSQL server")
    base = make_url(configured)
    require("PostgreSQL", base.host or "127.0.0.1", base.port or 5432)
    # Per process, so two test runs on one machine do not drop each other's database.
    name = f"relay_migrations_test_{os.getpid()}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT", poolclass=pool.NullPool)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield base.set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(fixture))


def _engine(url: str) -> Engine:
    return create_engine(url, poolclass=pool.NullPool)


def _tables(url: str) -> set[str]:
    engine = _engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_creates_every_table_and_downgrade_removes_them(db_url: str) -> None:
    assert migrations.current(db_url) is None

    migrations.upgrade(db_url)

    assert migrations.current(db_url) == migrations.head()
    assert _tables(db_url) == EXPECTED_TABLES

    migrations.downgrade(db_url)

    assert migrations.current(db_url) is None
    assert _tables(db_url) == set()


def test_upgrade_after_downgrade_is_repeatable(db_url: str) -> None:
    migrations.upgrade(db_url)
    migrations.downgrade(db_url)
    migrations.upgrade(db_url)

    assert _tables(db_url) == EXPECTED_TABLES


def test_migrated_schema_matches_the_models(db_url: str) -> None:
    migrations.upgrade(db_url)

    engine = _engine(db_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()

    assert diff == []


def test_migrated_schema_enforces_its_constraints(db_url: str) -> None:
    """The check constraints and cascades came through the migration, not only the models."""
    migrations.upgrade(db_url)

    engine = _engine(db_url)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            now = "2026-01-01 00:00:00+00:00"
            conn.execute(
                text(
                    "INSERT INTO tenants (id, name, plan, status, created_at, updated_at) "
                    "VALUES ('t1', 'acme', 'team', 'normal', :now, :now)"
                ),
                {"now": now},
            )
            conn.execute(
                text(
                    "INSERT INTO provider_quotas (id, tenant_id, provider, quota_type,"
                    " quota_limit, created_at, updated_at)"
                    " VALUES ('q1', 't1', 'openai', 'trial', 10, :now, :now)"
                ),
                {"now": now},
            )
            assert conn.execute(text("SELECT quota_used FROM provider_quotas")).scalar() == 0
            conn.execute(text("DELETE FROM tenants WHERE id = 't1'"))
            assert conn.execute(text("SELECT count(*) FROM provider_quotas")).scalar() == 0
        with pytest.raises(IntegrityError, match=r"(?i)check"), engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO tenants (id, name, plan, status, created_at, updated_at) "
                    "VALUES ('t2', 'acme', 'platinum', 'normal', :now, :now)"
                ),
                {"now": now},
            )
    finally:
        engine.dispose()


def test_migration_files_ship_with_the_package() -> None:
    """Every file Alembic needs is a package module or matched by pyproject's package-data."""
    location = migrations.SCRIPT_LOCATION
    assert migrations.alembic_config("sqlite://").get_main_option("script_location") == str(
        location
    )
    assert (location / "env.py").is_file()
    assert (location / "script.py.mako").is_file()
    assert list((location / "versions").glob("0001_*.py"))

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    globs = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"]["relay"]
    package_root = location.parent
    for path in location.rglob("*"):
        if path.is_dir() or "__pycache__" in path.parts:
            continue
        if path.suffix == ".py" and (path.parent / "__init__.py").is_file():
            continue  # a module of the package: always included
        relative = path.relative_to(package_root).as_posix()
        assert any(fnmatch.fnmatch(relative, glob) for glob in globs), relative
