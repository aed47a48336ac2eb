"""``SchedulingSettings``: defaults, validation, and mounting under ``RELAY_SCHEDULING_*``."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from relay.config import Plan
from relay.scheduling.settings import SchedulingSettings


class Mounted(BaseSettings):
    """How ``relay.config.Settings`` mounts it."""

    model_config = SettingsConfigDict(
        env_prefix="RELAY_", env_nested_delimiter="_", env_nested_max_split=1
    )
    scheduling: SchedulingSettings = Field(default_factory=SchedulingSettings)


def test_defaults_cover_every_plan() -> None:
    settings = SchedulingSettings()
    for plan in Plan:
        assert settings.slice_for(plan) > 0
        assert settings.rate_per_second[plan] > 0
        assert settings.rate_burst[plan] >= 1
        assert plan in settings.daily_workflow_runs
    assert settings.window_for("any") == settings.window


def test_environment_reaches_the_nested_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_SCHEDULING_WINDOW", "3")
    monkeypatch.setenv("RELAY_SCHEDULING_LEASE_TTL", "12.5")
    monkeypatch.setenv("RELAY_SCHEDULING_TIME_SLICE", '{"sandbox": 7}')
    monkeypatch.setenv("RELAY_SCHEDULING_QUEUE_WINDOWS", '{"dataset": 16}')
    settings = Mounted().scheduling
    assert (settings.window, settings.lease_ttl) == (3, 12.5)
    assert settings.slice_for(Plan.SANDBOX) == 7
    assert settings.window_for("dataset") == 16


@pytest.mark.parametrize(
    "overrides",
    [
        {"window": 0},
        {"lease_ttl": 0},
        {"lease_ttl": 60, "dispatch_ttl": 30},
        {"rate_burst": {"gold": 3}},
        {"rate_burst": {"sandbox": 0}},
        {"time_slice": {"team": -1}},
        {"daily_workflow_runs": {"team": -1}},
        {"wait_buckets": (1.0, 0.5)},
        {"key_prefix": "a{b}"},
    ],
)
def test_bad_values_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        SchedulingSettings(**overrides)  # type: ignore[arg-type]


def test_importing_the_settings_pulls_in_nothing_heavy() -> None:
    # relay.config mounts these settings: no cycle, and no Celery or Redis on the way.
    code = (
        "import sys, relay.scheduling.settings; "
        "print(sorted(m for m in sys.modules if m.startswith(('celery', 'redis', 'kombu'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_problems_name_the_settings_that_clash_with_task_limits() -> None:
    assert SchedulingSettings().problems(longest_time_limit=360, visibility_timeout=7200) == []
    found = SchedulingSettings(dispatch_ttl=100, done_retention=60).problems(360, 7200)
    assert len(found) == 2
    assert "RELAY_SCHEDULING_DISPATCH_TTL" in found[0]
    assert "RELAY_SCHEDULING_DONE_RETENTION" in found[1]
