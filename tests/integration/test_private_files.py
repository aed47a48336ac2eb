"""Everything relay writes under ``var/`` is owner-only, whatever the umask it starts with."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay.adapters.embedded_redis import EmbeddedRedis
from relay.app_factory import create_runtime
from relay.config import load_settings
from relay.models.base import Base
from tests.waiting import wait_until


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """A permissive umask, as a service started by hand often has."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _modes(root: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        if not path.is_symlink():
            found[str(path.relative_to(root))] = stat.S_IMODE(path.stat().st_mode)
    return found


def _open_to_others(modes: dict[str, int]) -> dict[str, str]:
    return {name: oct(mode) for name, mode in modes.items() if mode & 0o077}


@pytest.mark.usefixtures("loose_umask")
def test_database_and_embedded_redis_files_are_private(tmp_path: Path) -> None:
    var = tmp_path / "var"
    settings = load_settings(var_dir=var, database={"url": None}, redis={"url": None})
    runtime = create_runtime(settings)
    try:
        Base.metadata.create_all(runtime.db.engine)
        runtime.redis.set("relay:test:secret", "workflow input")
        runtime.redis.execute_command("BGREWRITEAOF")
        with runtime.db.engine.begin() as conn:
            conn.exec_driver_sql("SELECT count(*) FROM tenants")
        wait_until(lambda: _aof_written(var), timeout=10, what="the append-only file")
        modes = _modes(var)
    finally:
        runtime.close()
        if runtime.embedded_redis is not None:
            runtime.embedded_redis.stop()
    assert "relay.db" in modes
    assert any(".aof" in name for name in modes), sorted(modes)
    assert "redis/redis.log" in modes
    assert _open_to_others(modes) == {}, "readable by other users"
    assert modes["."] == 0o700
    assert modes["relay.db"] == 0o600


def _aof_written(var: Path) -> bool:
    return any(".aof" in p.name for p in (var / "redis").rglob("*"))


@pytest.mark.usefixtures("loose_umask")
def test_files_left_open_by_an_older_version_are_tightened(tmp_path: Path) -> None:
    redis_dir = tmp_path / "var" / "redis"
    redis_dir.mkdir(parents=True, mode=0o755)
    old = redis_dir / "appendonly.aof"
    old.write_text("")
    old.chmod(0o644)
    server = EmbeddedRedis(redis_dir)
    server.ensure()
    try:
        assert _open_to_others(_modes(redis_dir)) == {}
        assert stat.S_IMODE((tmp_path / "var").stat().st_mode) == 0o700
    finally:
        server.stop()


def test_a_shared_sticky_directory_is_left_alone(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    from relay.adapters.private_files import private_dir

    private_dir(shared)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    inside = private_dir(shared / "relay")
    assert stat.S_IMODE(inside.stat().st_mode) == 0o700
