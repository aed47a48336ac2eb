"""The sections of relay's settings, one pydantic model each (``RELAY_<SECTION>_<FIELD>``)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator


class Plan(StrEnum):
    """Billing plan of a tenant; drives queues, concurrency and fair-share weights."""

    SANDBOX = "sandbox"
    PROFESSIONAL = "professional"
    TEAM = "team"
    ENTERPRISE = "enterprise"


class RedisSettings(BaseModel):
    """Redis used as broker, result store and coordination."""

    url: str | None = Field(
        None,
        description="redis://, rediss:// or unix:// URL; unset starts an embedded Redis under var/",
    )
    sentinels: str | None = Field(
        None, description="Comma-separated host:port list of Sentinels (enables Sentinel mode)"
    )
    sentinel_master: str = Field("mymaster", description="Sentinel master name")
    ssl_ca_certs: str | None = Field(None, description="CA bundle for rediss://")
    ssl_certfile: str | None = Field(None, description="Client certificate for rediss://")
    ssl_keyfile: str | None = Field(None, description="Client key for rediss://")
    socket_timeout: float = Field(5.0, gt=0, description="Seconds before a Redis call times out")
    retries: int = Field(
        3, ge=0, description="Retries with exponential backoff on connection errors"
    )

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value


class DatabaseSettings(BaseModel):
    """SQL database (SQLite embedded default, PostgreSQL through psycopg 3)."""

    url: str | None = Field(None, description="SQLAlchemy URL; unset uses SQLite at var/relay.db")
    pool_size: int = Field(10, ge=1, description="Connection pool size (PostgreSQL)")
    echo: bool = Field(False, description="Log every SQL statement")

    @field_validator("url")
    @classmethod
    def _dialect(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if value.startswith(("postgresql://", "postgres://")):
            # psycopg 3 is the driver relay ships with; psycopg2 is not a dependency.
            return "postgresql+psycopg://" + value.split("://", 1)[1]
        if not value.startswith(("sqlite", "postgresql+psycopg://")):
            raise ValueError("must be a sqlite:// or postgresql:// URL")
        return value


class CelerySettings(BaseModel):
    """Celery broker and worker behaviour."""

    broker_url: str | None = Field(
        None, description="Broker URL (e.g. amqp://guest:guest@127.0.0.1:5672//); unset uses Redis"
    )
    visibility_timeout: int = Field(
        7200, gt=0, description="Seconds before an unacknowledged Redis message is redelivered"
    )
    concurrency: int = Field(2, ge=1, description="Worker processes started by `relay up`")
    prefetch_multiplier: int = Field(1, ge=1, description="Messages reserved per worker process")
    result_expires: int = Field(86400, gt=0, description="Seconds task results are kept")
    heartbeat_interval: float = Field(
        10.0, gt=0, description="Seconds between heartbeats of a running task's record"
    )
    stale_after: float = Field(
        60.0, gt=0, description="Seconds without heartbeat before the reaper requeues a task"
    )
    lost_after: float = Field(
        60.0,
        gt=0,
        description="Seconds after publishing before an outbox task never started is resent",
    )
    beat_max_interval: float = Field(
        5.0,
        gt=0,
        description="Most seconds beat sleeps between ticks; a standby polls the lock as often",
    )
    beat_lock_timeout: int = Field(
        30,
        gt=0,
        description="Seconds beat's lock outlives its holder; a standby takes over after it",
    )
    outbox_max_attempts: int = Field(
        20,
        ge=1,
        description="Failed publishes (broker outages not counted) before an outbox row "
        "becomes a dead letter",
    )
    outbox_max_age: float = Field(
        86400.0,
        gt=0,
        description="Seconds an outbox row may stay unpublished before it becomes a dead letter",
    )
    outbox_grace_seconds: float = Field(
        10.0,
        ge=0,
        description="Seconds a committed outbox row may stay unpublished before the relay "
        "republishes it (covers the gap between commit and the after-commit publish)",
    )
    events: bool = Field(
        True,
        description="Send task events, sent events included (`celery events`, Flower); false "
        "turns them off",
    )
    shutdown_grace: float = Field(
        30.0,
        gt=0,
        description="Seconds a stopping worker lets running tasks finish (a workflow run pauses "
        "at its next node boundary) before it kills them and hands their messages back",
    )


class ApiSettings(BaseModel):
    """HTTP API server."""

    host: str = Field("127.0.0.1", description="Address the API binds to")
    port: int = Field(5001, ge=0, le=65535, description="Port the API binds to")
    workers: int = Field(1, ge=1, description="gunicorn worker processes (gevent)")
    admin_token: str | None = Field(None, description="Bearer token for admin endpoints")
    readonly_token: str | None = Field(
        None, description="Token that signs in to the dashboard with the read-only role"
    )
    secret_key: str | None = Field(
        None,
        description="Key that signs stream tokens and dashboard sessions (generated into "
        "<var>/secret-key when unset; every API process must share it)",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Origins a browser may call the API from (JSON list, e.g. "
        '["https://app.example.com"]); others get no Access-Control-* headers',
    )
    stream_token_ttl: int = Field(
        300,
        gt=0,
        le=3600,
        description="Seconds a run's stream token (EventSource's ?stream_token=) is accepted",
    )


class StreamingSettings(BaseModel):
    """Run event streams (SSE)."""

    ping_interval: float = Field(10.0, gt=0, description="Seconds between SSE pings")
    retention: int = Field(600, gt=0, description="Seconds a run's stream is kept after its end")
    max_execution_time: int = Field(1200, gt=0, description="Seconds before a listener gives up")
    heartbeat_interval: float = Field(
        2.0, gt=0, description="Seconds between the liveness beats a running workflow run sends"
    )
    worker_lost_after: float = Field(
        30.0,
        gt=0,
        description="Seconds without a liveness beat before the reaper ends a run as failed "
        "(terminal error event, run record failed)",
    )
    stop_poll_interval: float = Field(
        0.2, gt=0, description="Seconds between a running run's checks of its stop flag"
    )
    stop_grace: float = Field(
        3.0,
        gt=0,
        description="Seconds a listener waits for the worker's terminal event after a stop "
        "before it ends the stream with a stop event itself",
    )
    ownership_ttl: int = Field(
        3600,
        gt=0,
        description="Seconds a queued or running run's owner and control keys live in Redis "
        "(refreshed while it runs; the retention period once it ended)",
    )
    checkpoint_ttl: int = Field(
        86400, gt=0, description="Seconds the checkpoint of a paused run is kept in Redis"
    )
    max_listeners: int = Field(
        1000,
        ge=1,
        description="Redis connections one process keeps for SSE listeners (an open stream holds "
        "one while it waits for events; more streams wait for a free one)",
    )


class WorkflowSettings(BaseModel):
    """Workflow runs in workers: LLM provider, limits and node settings.

    Mapped onto ``relay.workflow.config`` models by ``relay.tasks.workflow_run`` (this module
    stays below the workflow package, which models must not reach).
    """

    llm_provider: Literal["offline", "openai"] = Field(
        "offline",
        description="LLM provider of llm nodes: offline (deterministic replies labelled offline, "
        "no model is called) or openai (any OpenAI-compatible API)",
    )
    llm_base_url: str | None = Field(
        None, description="OpenAI-compatible API base URL, e.g. https://api.openai.com/v1"
    )
    llm_api_key: SecretStr | None = Field(None, description="API key of the LLM API (never logged)")
    llm_model: str | None = Field(None, description="Model to call; unset keeps the DSL's model")
    llm_timeout: float = Field(60.0, gt=0, description="Seconds per LLM API read")
    llm_token_delay: float = Field(
        0.02, ge=0, description="offline provider: seconds between streamed tokens"
    )
    llm_reply: str | None = Field(
        None, description="offline provider: fixed reply instead of one derived from the prompt"
    )
    llm_vision: bool = Field(
        True,
        description="The configured model accepts images; when false, workflows whose llm nodes "
        "enable vision are refused on import and on saving",
    )
    max_steps: int = Field(500, ge=1, description="Node runs per workflow run")
    max_time: float = Field(1200.0, gt=0, description="Seconds of wall time per workflow run")
    max_workers: int = Field(4, ge=1, le=256, description="Threads running nodes of one run")
    http_allow_private_addresses: bool = Field(
        False, description="Let http-request nodes reach loopback and private addresses"
    )
    code_time_limit: float = Field(10.0, gt=0, description="Seconds a code node may run")
    code_sandbox: Literal["bubblewrap", "unsafe-local"] = Field(
        "bubblewrap",
        description="Isolation of code nodes: bubblewrap (namespaces, read-only filesystem view, "
        "seccomp; code nodes refuse to run when it cannot be set up) or unsafe-local (a plain "
        "child process: local development only, logs a warning each time code runs)",
    )
    code_allowed_packages: list[str] = Field(
        default_factory=lambda: [
            "numpy",
            "pandas",
            "requests",
            "json-repair",
            "jieba",
            "sympy",
            "matplotlib",
        ],
        description="Packages (pip names, installed in relay's environment) code nodes may "
        "import besides the standard library; their dependencies come along",
    )
    code_memory_limit_mb: int = Field(
        512, ge=32, description="Address-space limit of a code node's process (MiB)"
    )
    code_workdir_mb: int = Field(
        64, ge=1, description="Size of a code node's private writable tmpfs (MiB)"
    )
    tool_credentials_key: SecretStr | None = Field(
        None,
        description="Fernet key (urlsafe base64, 32 bytes) encrypting tenants' tool credentials; "
        "without it tool credentials cannot be stored (never logged)",
    )
    tools_wikipedia_url: str = Field(
        "https://{language}.wikipedia.org", description="wikipedia tool: MediaWiki site"
    )
    tools_duckduckgo_url: str = Field(
        "https://html.duckduckgo.com/html/", description="duckduckgo tool: HTML results page"
    )
    tools_searxng_url: str | None = Field(
        None, description="searxng tool: default instance (a tenant credential may set its own)"
    )
    tools_jina_reader_url: str = Field("https://r.jina.ai", description="jina_reader tool")
    tools_jina_search_url: str = Field("https://s.jina.ai", description="jina_search tool")

    @model_validator(mode="after")
    def _openai_needs_url(self) -> WorkflowSettings:
        if self.llm_provider == "openai" and not self.llm_base_url:
            raise ValueError("llm_provider openai needs RELAY_WORKFLOW_LLM_BASE_URL")
        return self


class TenancySettings(BaseModel):
    """Per-plan concurrency and fair-share weights."""

    weights: dict[Plan, int] = Field(
        default_factory=lambda: {
            Plan.SANDBOX: 1,
            Plan.PROFESSIONAL: 4,
            Plan.TEAM: 8,
            Plan.ENTERPRISE: 16,
        },
        description="Fair-share weight per plan (JSON object)",
    )
    concurrency: dict[Plan, int] = Field(
        default_factory=lambda: {
            Plan.SANDBOX: 1,
            Plan.PROFESSIONAL: 4,
            Plan.TEAM: 8,
            Plan.ENTERPRISE: 16,
        },
        description="Tasks one tenant may run at once per task type (JSON object)",
    )
    default_quotas: dict[str, int] = Field(
        default_factory=lambda: {"openai": 1_000_000, "anthropic": 1_000_000},
        description="Trial token quota per model provider given to every new tenant (JSON object)",
    )

    @field_validator("default_quotas")
    @classmethod
    def _non_negative(cls, value: dict[str, int]) -> dict[str, int]:
        bad = [provider for provider, n in value.items() if n < 0]
        if bad:
            raise ValueError(f"must not be negative for {', '.join(bad)}")
        return value

    @field_validator("weights", "concurrency")
    @classmethod
    def _positive(cls, value: dict[Plan, int]) -> dict[Plan, int]:
        bad = [str(plan) for plan, n in value.items() if n < 1]
        if bad:
            raise ValueError(f"must be at least 1 for {', '.join(bad)}")
        return value


class MonitoringSettings(BaseModel):
    """Health checks, metrics and alerts."""

    health_timeout: float = Field(1.0, gt=0, description="Seconds a health probe may take")
    worker_ttl: int = Field(30, gt=0, description="Seconds a worker's presence outlives its beat")
    alert_webhook: str | None = Field(None, description="URL that receives alerts as JSON")
    alert_webhook_timeout: float = Field(5.0, gt=0, description="Seconds per alert webhook POST")
    alert_webhook_min_severity: Literal["info", "warning", "error", "critical"] = Field(
        "warning", description="Lowest severity POSTed to the webhook (all alerts are logged)"
    )
    alert_dedup_seconds: int = Field(
        300, ge=0, description="Seconds an alert (same key and severity) stays suppressed; 0: off"
    )
    metrics_token: str | None = Field(
        None, description="Bearer token /metrics requires (unset: /metrics is open)"
    )
    queue_max_length: int = Field(1000, ge=1, description="Queue length the monitor alerts above")
    queue_max_age: float = Field(
        300.0, gt=0, description="Seconds a queue's oldest message may wait before an alert"
    )
    tenant_labels: dict[str, str] = Field(
        default_factory=dict,
        description="Tenant id -> label in metrics (JSON); other tenants get a short hash",
    )
    worker_metrics_port: int | None = Field(
        None, ge=1, le=65535, description="Port of a worker's own /metrics (unset: none)"
    )
    worker_metrics_host: str = Field("127.0.0.1", description="Address a worker's /metrics binds")
    alert_slack_webhook: str | None = Field(
        None, description="Slack incoming-webhook URL that receives alerts (text + blocks)"
    )
    noisy_share: float = Field(
        1.5,
        gt=1,
        description="Alert when a tenant holds this many times its fair share of a queue's "
        "slots while another tenant waits",
    )
    noisy_wait_p99: float = Field(
        60.0,
        gt=0,
        description="Alert when a tenant's queue-wait p99 (since the last check) "
        "exceeds these seconds",
    )
    event_error_rate: float = Field(
        0.1, gt=0, le=1, description="Alert when a signal's receivers fail at this rate (5 min)"
    )
    event_error_min_calls: int = Field(
        10, ge=1, description="Receiver calls in 5 minutes before a signal's error rate counts"
    )

    @field_validator("alert_webhook", "alert_slack_webhook")
    @classmethod
    def _webhook_http(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value or None


class MailSettings(BaseModel):
    """Outgoing mail over SMTP (the ``mail`` queue)."""

    host: str = Field("localhost", description="SMTP server host")
    port: int = Field(25, ge=1, le=65535, description="SMTP server port (587 STARTTLS, 465 SSL)")
    username: str | None = Field(None, description="SMTP login; unset sends without AUTH")
    # SecretStr: the password never appears in a repr, a log line or the settings table.
    password: SecretStr | None = Field(None, description="SMTP password (never logged)")
    starttls: bool = Field(False, description="Upgrade the connection with STARTTLS")
    ssl: bool = Field(False, description="Connect over implicit TLS (SMTPS)")
    from_address: str = Field("relay@localhost", description="Sender address of outgoing mail")
    timeout: float = Field(10.0, gt=0, description="Seconds before an SMTP operation times out")

    @model_validator(mode="after")
    def _one_tls_mode(self) -> MailSettings:
        if self.starttls and self.ssl:
            raise ValueError("starttls and ssl are exclusive: pick one")
        return self


class OpsTraceSettings(BaseModel):
    """Delivery of ops traces to an observability endpoint (the ``ops_trace`` queue)."""

    endpoint: str | None = Field(
        None, description="http(s) URL traces are POSTed to as JSON; unset only stores them"
    )
    timeout: float = Field(10.0, gt=0, description="Seconds before a trace delivery times out")

    @field_validator("endpoint")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value or None


Days = Annotated[int, Field(ge=0)]


def _sandbox_30_days() -> dict[Plan, Days]:
    return {Plan.SANDBOX: 30, Plan.PROFESSIONAL: 0, Plan.TEAM: 0, Plan.ENTERPRISE: 0}


class RetentionSettings(BaseModel):
    """Clean-up on beat, and which beat entries run. Days per plan (JSON); 0 or absent: never."""

    disabled_beats: list[str] = Field(
        default_factory=list, description='Beat entries not to schedule (JSON list, e.g. ["purge"])'
    )
    unused_dataset_days: dict[Plan, Days] = Field(
        default_factory=lambda: {
            Plan.SANDBOX: 7,
            Plan.PROFESSIONAL: 30,
            Plan.TEAM: 0,
            Plan.ENTERPRISE: 0,
        },
        description="Days without document or message activity before a dataset's documents are "
        "disabled, per plan (0: never)",
    )
    message_days: dict[Plan, Days] = Field(
        default_factory=_sandbox_30_days,
        description="Days messages are kept, per plan (0: forever)",
    )
    workflow_run_days: dict[Plan, Days] = Field(
        default_factory=_sandbox_30_days,
        description="Days workflow runs (with node executions) are kept, per plan (0: forever)",
    )
    batch_size: int = Field(500, ge=1, le=10_000, description="Rows per clean-up transaction")
    tenant_batch_size: int = Field(100, ge=1, description="Tenants per page (dataset clean-up)")


class IndexingSettings(BaseModel):
    """Document indexing: plan limits checked before any work, and how text becomes segments.

    Limits are per plan (JSON objects). An upload is refused (403 ``plan_limit``) when it breaks
    one; the indexing task checks the batch and document limits again, for the plan the tenant
    has when the work starts.
    """

    batch_upload_limit: int = Field(
        10, ge=1, le=1000, description="Documents one upload may carry, on every plan"
    )
    plan_batch_limit: dict[Plan, int] = Field(
        default_factory=lambda: {Plan.SANDBOX: 1},
        description="Documents per upload for the plans listed, when lower than "
        "batch_upload_limit (JSON object)",
    )
    document_limit: dict[Plan, int] = Field(
        default_factory=lambda: {
            Plan.SANDBOX: 50,
            Plan.PROFESSIONAL: 500,
            Plan.TEAM: 1000,
            Plan.ENTERPRISE: 0,
        },
        description="Documents a tenant may hold over all its datasets, per plan (0: no limit)",
    )
    separator: str = Field(
        "\\n\\n",
        min_length=1,
        description="Separator segments are split at first (escapes \\n and \\t are decoded)",
    )
    max_segment_chars: int = Field(
        500, ge=50, le=20_000, description="Largest segment, in characters"
    )
    segment_overlap: int = Field(
        50, ge=0, description="Characters a segment repeats from the end of the one before"
    )
    remove_urls_emails: bool = Field(
        False, description="Remove URLs and e-mail addresses while cleaning the text"
    )

    @field_validator("plan_batch_limit", "document_limit")
    @classmethod
    def _not_negative(cls, value: dict[Plan, int]) -> dict[Plan, int]:
        bad = [str(plan) for plan, n in value.items() if n < 0]
        if bad:
            raise ValueError(f"must not be negative for {', '.join(bad)}")
        return value

    @model_validator(mode="after")
    def _overlap_fits(self) -> IndexingSettings:
        if self.segment_overlap * 2 >= self.max_segment_chars:
            raise ValueError("segment_overlap must be less than half of max_segment_chars")
        return self

    @property
    def separator_text(self) -> str:
        """The separator with its ``\\n`` / ``\\t`` escapes decoded."""
        return self.separator.replace("\\n", "\n").replace("\\t", "\t")

    def batch_limit(self, plan: Plan) -> int:
        """Documents one upload of a tenant on ``plan`` may carry."""
        return min(
            self.batch_upload_limit, self.plan_batch_limit.get(plan, self.batch_upload_limit)
        )

    def documents_allowed(self, plan: Plan) -> int | None:
        """Documents a tenant on ``plan`` may hold; None when unlimited."""
        return self.document_limit.get(plan) or None


class LogSettings(BaseModel):
    """Logging."""

    level: str = Field("INFO", description="Log level")
    json_format: bool = Field(True, description="JSON lines (true) or plain text (false)")

    @field_validator("level")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return value


class TracingSettings(BaseModel):
    """OpenTelemetry tracing (needs the `otel` extra); the exporter reads the standard OTEL_*
    variables (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME, OTEL_TRACES_EXPORTER...)."""

    enabled: bool | None = Field(
        None,
        description="Export spans; unset: on when OTEL_EXPORTER_OTLP_ENDPOINT, "
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_TRACES_EXPORTER is set",
    )
    service_name: str = Field("relay", description="service.name unless OTEL_SERVICE_NAME is set")


class SentrySettings(BaseModel):
    """Error reporting to Sentry (needs the `sentry` extra)."""

    dsn: str | None = Field(
        None, description="Sentry DSN; unset: no error reporting (never logged)"
    )
    environment: str | None = Field(None, description="Sentry environment tag")
    release: str | None = Field(None, description="Sentry release tag")
    traces_sample_rate: float = Field(
        0.0, ge=0, le=1, description="Share of requests and tasks sent as Sentry transactions"
    )


class SpoolSettings(BaseModel):
    """The local spool under ``var/spool`` for what must outlive a Redis outage."""

    max_bytes: int = Field(
        64 * 1024 * 1024, ge=4096, description="Bytes of unreplayed entries the spool holds"
    )
    replay_interval: float = Field(
        2.0, gt=0, description="Seconds between replay attempts while entries wait"
    )


class PressureSettings(BaseModel):
    """Resource pressure: above these shares the worker sheds low-priority queues and admission
    refuses new work with 429; below ``*_low`` both return to normal."""

    enabled: bool = Field(True, description="Watch CPU, memory and var/ disk")
    interval: float = Field(5.0, gt=0, description="Seconds between resource samples")
    cpu_high: float = Field(0.98, gt=0, le=1, description="CPU share that starts pressure")
    cpu_low: float = Field(0.85, gt=0, le=1, description="CPU share that ends it")
    memory_high: float = Field(0.92, gt=0, le=1, description="Memory share that starts pressure")
    memory_low: float = Field(0.85, gt=0, le=1, description="Memory share that ends it")
    disk_high: float = Field(0.95, gt=0, le=1, description="var/ disk share that starts pressure")
    disk_low: float = Field(0.90, gt=0, le=1, description="var/ disk share that ends it")
    retry_after: int = Field(15, ge=1, description="Retry-After seconds of a 429 under pressure")
    sustain: int = Field(
        6, ge=1, description="Samples in a row above a high threshold before pressure starts"
    )
    shed_queues: list[str] = Field(
        default_factory=lambda: [
            "dataset", "pipeline", "workflow_sandbox", "ops_trace", "app_deletion", "conversation"
        ],
        description="Low-priority queues a worker stops consuming under pressure (JSON list)",
    )  # fmt: skip

    @model_validator(mode="after")
    def _low_below_high(self) -> PressureSettings:
        for name in ("cpu", "memory", "disk"):
            if getattr(self, f"{name}_low") > getattr(self, f"{name}_high"):
                raise ValueError(f"{name}_low must not be above {name}_high")
        return self
