from __future__ import annotations

import pytest

from relay.config import Plan, describe_settings, load_settings
from relay.errors import ConfigError


def test_defaults_need_no_environment(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RELAY_REDIS_URL", raising=False)
    monkeypatch.delenv("RELAY_DATABASE_URL", raising=False)
    settings = load_settings(var_dir=tmp_path)
    assert settings.embedded_redis
    assert settings.database_url.startswith("sqlite:///")
    assert settings.tenancy.weights[Plan.ENTERPRISE] == 16


@pytest.mark.parametrize(
    ("env", "value", "fragment"),
    [
        ("RELAY_REDIS_URL", "http://localhost", "RELAY_REDIS_URL"),
        ("RELAY_DATABASE_URL", "mysql://x", "RELAY_DATABASE_URL"),
        ("RELAY_API_PORT", "not-a-port", "RELAY_API_PORT"),
        ("RELAY_API_PORT", "70000", "RELAY_API_PORT"),
        ("RELAY_CELERY_CONCURRENCY", "0", "RELAY_CELERY_CONCURRENCY"),
        ("RELAY_LOG_LEVEL", "LOUD", "RELAY_LOG_LEVEL"),
        ("RELAY_TENANCY_WEIGHTS", '{"sandbox": 0}', "RELAY_TENANCY_WEIGHTS"),
        ("RELAY_TENANCY_WEIGHTS", '{"gold": 3}', "RELAY_TENANCY_WEIGHTS"),
    ],
)
def test_bad_values_are_rejected_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as excinfo:
        load_settings()
    assert fragment in str(excinfo.value)
    assert str(excinfo.value).startswith("invalid configuration:")


def test_nested_variables_reach_their_section(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_REDIS_URL", "redis://127.0.0.1:6379/3")
    monkeypatch.setenv("RELAY_CELERY_VISIBILITY_TIMEOUT", "9000")
    monkeypatch.setenv("RELAY_TENANCY_CONCURRENCY", '{"team": 3}')
    settings = load_settings()
    assert settings.redis.url == "redis://127.0.0.1:6379/3"
    assert settings.celery.visibility_timeout == 9000
    assert settings.tenancy.concurrency == {Plan.TEAM: 3}
    assert not settings.embedded_redis


def test_postgres_urls_use_psycopg3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_DATABASE_URL", "postgresql://u@127.0.0.1/db")
    assert load_settings().database_url == "postgresql+psycopg://u@127.0.0.1/db"


def test_every_setting_is_documented() -> None:
    rows = describe_settings()
    assert all(description for _, _, description in rows)
    names = [name for name, _, _ in rows]
    assert "RELAY_REDIS_URL" in names
    assert "RELAY_DATABASE_URL" in names
    assert len(names) == len(set(names))


def test_code_sandbox_settings_reach_the_code_nodes(monkeypatch: pytest.MonkeyPatch) -> None:
    from relay.tasks.workflow_run import code_sandbox_config
    from relay.workflow.config import DEFAULT_SANDBOX_PACKAGES

    default = code_sandbox_config(load_settings().workflow)
    assert default.mode == "bubblewrap"  # isolation unless explicitly turned off
    assert default.allowed_packages == DEFAULT_SANDBOX_PACKAGES
    monkeypatch.setenv("RELAY_WORKFLOW_CODE_SANDBOX", "unsafe-local")
    monkeypatch.setenv("RELAY_WORKFLOW_CODE_ALLOWED_PACKAGES", '["numpy"]')
    monkeypatch.setenv("RELAY_WORKFLOW_CODE_MEMORY_LIMIT_MB", "256")
    monkeypatch.setenv("RELAY_WORKFLOW_CODE_WORKDIR_MB", "8")
    config = code_sandbox_config(load_settings().workflow)
    assert (config.mode, config.allowed_packages) == ("unsafe-local", ("numpy",))
    assert (config.memory_limit_mb, config.workdir_size_mb) == (256, 8)
    monkeypatch.setenv("RELAY_WORKFLOW_CODE_SANDBOX", "none")
    with pytest.raises(ConfigError, match="RELAY_WORKFLOW_CODE_SANDBOX"):
        load_settings()
