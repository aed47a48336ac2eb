"""relay's settings: nested pydantic-settings models read from ``RELAY_<SECTION>_<FIELD>``.

Every value has a documented default so that relay runs with no environment at all (embedded
Redis and SQLite under ``var/``). ``load_settings()`` validates once at start-up and turns a bad
value into one clear message that names the environment variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from relay.config.scheduling import SchedulingSettings
from relay.config.sections import (
    ApiSettings,
    CelerySettings,
    DatabaseSettings,
    IndexingSettings,
    LogSettings,
    MailSettings,
    MonitoringSettings,
    OpsTraceSettings,
    Plan,
    PressureSettings,
    RedisSettings,
    RetentionSettings,
    SentrySettings,
    SpoolSettings,
    StreamingSettings,
    TenancySettings,
    TracingSettings,
    WorkflowSettings,
)
from relay.errors import ConfigError

ENV_PREFIX = "RELAY_"

__all__ = [
    "ENV_PREFIX",
    "Settings",
    "load_settings",
    "describe_settings",
    "SchedulingSettings",
    "Plan",
    "RedisSettings",
    "DatabaseSettings",
    "CelerySettings",
    "ApiSettings",
    "StreamingSettings",
    "WorkflowSettings",
    "TenancySettings",
    "MonitoringSettings",
    "MailSettings",
    "OpsTraceSettings",
    "RetentionSettings",
    "IndexingSettings",
    "LogSettings",
    "TracingSettings",
    "SentrySettings",
    "SpoolSettings",
    "PressureSettings",
]


class Settings(BaseSettings):
    """All of relay's settings. ``RELAY_REDIS_URL`` sets ``redis.url`` and so on."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="_",
        env_nested_max_split=1,
        extra="ignore",
    )

    var_dir: Path = Field(Path("var"), description="Directory for embedded Redis, SQLite, spool")
    redis: RedisSettings = Field(default_factory=RedisSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    celery: CelerySettings = Field(default_factory=CelerySettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    streaming: StreamingSettings = Field(default_factory=StreamingSettings)
    workflow: WorkflowSettings = Field(default_factory=WorkflowSettings)
    tenancy: TenancySettings = Field(default_factory=TenancySettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    mail: MailSettings = Field(default_factory=MailSettings)
    ops_trace: OpsTraceSettings = Field(default_factory=OpsTraceSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    indexing: IndexingSettings = Field(default_factory=IndexingSettings)
    scheduling: SchedulingSettings = Field(default_factory=SchedulingSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    sentry: SentrySettings = Field(default_factory=SentrySettings)
    spool: SpoolSettings = Field(default_factory=SpoolSettings)
    pressure: PressureSettings = Field(default_factory=PressureSettings)

    @model_validator(mode="after")
    def _absolute_var_dir(self) -> Settings:
        self.var_dir = self.var_dir.resolve()
        return self

    @property
    def embedded_redis(self) -> bool:
        """True when relay must run its own Redis server."""
        return self.redis.url is None and self.redis.sentinels is None

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL in effect (SQLite under var/ by default)."""
        return self.database.url or f"sqlite:///{self.var_dir / 'relay.db'}"

    @property
    def redis_socket(self) -> Path:
        """Unix socket of the embedded Redis server."""
        return self.var_dir / "redis" / "redis.sock"


def _env_name(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if not str(p).isdigit()]
    return ENV_PREFIX + "_".join(parts[:2]).upper() if parts else ENV_PREFIX


def load_settings(**overrides: Any) -> Settings:
    """Read and validate settings; raise ``ConfigError`` naming each bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = [f"{_env_name(err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None


def describe_settings() -> list[tuple[str, str, str]]:
    """(environment variable, default, description) for every setting, for docs and the CLI."""
    rows: list[tuple[str, str, str]] = []
    for name, field in Settings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            for sub, subfield in annotation.model_fields.items():
                default = subfield.get_default(call_default_factory=True)
                rows.append(
                    (
                        f"{ENV_PREFIX}{name}_{sub}".upper(),
                        _show(default),
                        subfield.description or "",
                    )
                )
        else:
            rows.append(
                (
                    f"{ENV_PREFIX}{name}".upper(),
                    _show(field.get_default(call_default_factory=True)),
                    field.description or "",
                )
            )
    return rows


def _show(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)
