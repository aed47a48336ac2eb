"""relay's built-in ``time`` provider (``current_time``), which needs no network; the whole set
of built-in providers, web tools included, is :func:`relay.workflow.tools.catalog.builtin_tools`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from relay.workflow.llm.base import FunctionSpec
from relay.workflow.stop import StopToken
from relay.workflow.tools.base import (
    ToolCall,
    ToolError,
    ToolProviders,
    ToolResult,
    text_parameters,
)

DEFAULT_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


class TimeProvider:
    """Dify's ``time`` provider: ``current_time`` with ``format`` and ``timezone`` parameters."""

    provider_id = "time"

    def __init__(self, clock: type[datetime] = datetime) -> None:
        self._clock = clock  # tests pass a datetime subclass with a fixed now()

    def tool_names(self) -> Sequence[str]:
        return ("current_time",)

    def describe(self, tool_name: str) -> FunctionSpec | None:
        if tool_name != "current_time":
            return None
        return text_parameters(
            "The current date and time in a timezone.", "current_time",
            ("timezone", "IANA timezone such as Asia/Tokyo (default UTC)", False),
            ("format", "strftime format (default %Y-%m-%d %H:%M:%S)", False),
        )  # fmt: skip

    def invoke(self, call: ToolCall, stop: StopToken) -> ToolResult:
        if call.tool_name != "current_time":
            raise ToolError(f"tool provider 'time' has no tool '{call.tool_name}'")
        values = {**call.configurations, **call.parameters}
        zone_name = str(values.get("timezone") or "UTC")
        try:
            zone = UTC if zone_name == "UTC" else ZoneInfo(zone_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ToolError(f"current_time: unknown timezone {zone_name!r}") from None
        fmt = str(values.get("format") or DEFAULT_TIME_FORMAT)
        return ToolResult(text=self._clock.now(zone).strftime(fmt))


def local_tools() -> ToolProviders:
    """A source with the providers that need no network (the default of ``NodeServices``)."""
    return ToolProviders([TimeProvider()])
