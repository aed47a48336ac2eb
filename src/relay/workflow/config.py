"""Settings the engine and nodes take explicitly (relay.config maps its environment onto these)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EngineConfig(_Config):
    """How the engine schedules nodes."""

    max_workers: int = Field(4, ge=1, le=256, description="threads running nodes of one level")
    max_iteration_parallelism: int = Field(
        10, ge=1, le=100, description="cap on an iteration's parallel_nums"
    )
    idle_tick: float = Field(
        0.1, gt=0, description="seconds between layer on_idle calls while nodes run"
    )


class ExecutionLimits(_Config):
    """Limits the ExecutionLimitsLayer enforces (Dify's defaults)."""

    max_steps: int = Field(500, ge=1, description="node runs per run, iteration items included")
    max_time: float = Field(1200.0, gt=0, description="seconds of wall time per run")


class LLMProviderConfig(_Config):
    """One LLM provider: the deterministic ``offline`` one or an OpenAI-compatible HTTP API."""

    kind: Literal["offline", "openai"] = "offline"
    base_url: str | None = Field(None, description="e.g. https://api.openai.com/v1 (openai)")
    api_key: SecretStr | None = None
    model: str | None = Field(None, description="model to call; None keeps the DSL's model name")
    token_delay: float = Field(0.02, ge=0, description="offline: seconds between tokens")
    reply: str | None = Field(
        None, description="offline: fixed reply instead of one derived from the prompt"
    )
    timeout: float = Field(60.0, gt=0, description="openai: seconds per request read")
    vision: bool = Field(
        True, description="the model accepts images; llm nodes with vision on fail clearly if not"
    )


class LLMSettings(_Config):
    """Which provider each llm node uses: by node id, then by the DSL's provider, then default."""

    default: LLMProviderConfig = Field(default_factory=LLMProviderConfig)
    providers: dict[str, LLMProviderConfig] = Field(
        default_factory=dict, description="keyed by the DSL model provider (openai, deepseek)"
    )
    nodes: dict[str, LLMProviderConfig] = Field(default_factory=dict, description="by node id")


class HttpRequestConfig(_Config):
    """Limits of the http-request node."""

    connect_timeout: float = Field(10.0, gt=0)
    read_timeout: float = Field(60.0, gt=0)
    write_timeout: float = Field(20.0, gt=0)
    max_response_bytes: int = Field(10 * 1024 * 1024, ge=1)
    allow_private_addresses: bool = Field(
        False, description="allow loopback/private/link-local targets (SSRF guard off)"
    )
    verify_ssl: bool = True


# What Dify's sandbox offers code nodes (pip names); their dependencies come along.
DEFAULT_SANDBOX_PACKAGES: tuple[str, ...] = (
    "numpy",
    "pandas",
    "requests",
    "json-repair",
    "jieba",
    "sympy",
    "matplotlib",
)


class CodeSandboxConfig(_Config):
    """Isolation and limits of the code node's child process."""

    mode: Literal["bubblewrap", "unsafe-local"] = Field(
        "bubblewrap",
        description="bubblewrap: namespaces, read-only view, seccomp; unsafe-local: a plain child "
        "process with rlimits only (local development, never for tenants' code)",
    )
    bwrap: str = Field("bwrap", description="the bubblewrap executable (a name on PATH or a path)")
    python: str | None = Field(None, description="interpreter; None uses relay's own")
    allowed_packages: tuple[str, ...] = Field(
        DEFAULT_SANDBOX_PACKAGES,
        description="distributions code may import (with their dependencies), besides the stdlib",
    )
    time_limit: float = Field(10.0, gt=0, description="wall seconds before the child is killed")
    memory_limit_mb: int = Field(512, ge=32, description="address-space limit of the child")
    max_output_bytes: int = Field(1024 * 1024, ge=1024)
    max_file_size_mb: int = Field(16, ge=0, description="largest file the child may write")
    workdir_size_mb: int = Field(
        64, ge=1, description="size of the private tmpfs the code may write to (bubblewrap)"
    )
    sandbox_uid: int | None = Field(
        65534, description="the uid code runs as (nobody); unsafe-local drops to it only as root"
    )


class WebToolsConfig(_Config):
    """Where relay's built-in web tools send their requests (tests point them at local servers).

    Every request goes through the same address guard as the http-request node
    (``HttpRequestConfig``), redirects included.
    """

    wikipedia_url: str = Field(
        "https://{language}.wikipedia.org", description="MediaWiki site; {language} is filled in"
    )
    duckduckgo_url: str = Field(
        "https://html.duckduckgo.com/html/", description="DuckDuckGo's HTML results page"
    )
    searxng_url: str | None = Field(
        None, description="a SearXNG instance (JSON format enabled); a credential may set it"
    )
    jina_reader_url: str = Field("https://r.jina.ai", description="Jina Reader")
    jina_search_url: str = Field("https://s.jina.ai", description="Jina Search")
    max_text_chars: int = Field(
        100_000, ge=100, description="longest text a web tool returns to the workflow"
    )
    user_agent: str = Field("relay-workflow/1.0", description="sent by webscraper by default")
