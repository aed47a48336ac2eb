"""OpenTelemetry set-up from settings, and the spans of workflow runs.

``configure_tracing(settings)`` installs the SDK's tracer provider with an OTLP (or console)
exporter when the ``otel`` extra is installed and tracing is asked for (``RELAY_TRACING_ENABLED``
or the standard ``OTEL_EXPORTER_OTLP_*`` / ``OTEL_TRACES_EXPORTER`` variables). A provider that
is already installed (``opentelemetry-instrument``, an embedding application, a test) is kept.

``WorkflowTracingLayer`` is a graph engine layer: one span per run (or resumed slice) under the
task's span, and one per node under it; LLM and HTTP request nodes are client spans carrying the
provider, model, tokens or method and host, so the calls they make show up in the trace.
"""

from __future__ import annotations

import logging
import os
from typing import Any
from urllib.parse import urlsplit

from relay.adapters.tracing import end_span, provider, start_span
from relay.config import Settings
from relay.workflow.events import (
    GraphEngineEvent,
    GraphRunFailedEvent,
    NodeRunExceptionEvent,
    NodeRunFailedEvent,
    NodeRunStartedEvent,
    NodeRunSucceededEvent,
)
from relay.workflow.layers import GraphEngineLayer

try:
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
except ImportError:  # pragma: no cover - the otel extra is not installed
    trace = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

_OTEL_SWITCHES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_TRACES_EXPORTER",
)
# Node types whose work is a call to another service: their spans are client spans.
_CLIENT_NODES = {"llm": "llm", "http-request": "http", "knowledge-retrieval": "retrieval"}


def tracing_wanted(settings: Settings) -> bool:
    """Whether settings ask for spans to be exported."""
    if settings.tracing.enabled is not None:
        return settings.tracing.enabled
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return any(os.environ.get(name) for name in _OTEL_SWITCHES)


def sdk_installed() -> bool:
    """True when spans go to an SDK tracer provider (they are recorded)."""
    return trace is not None and isinstance(provider(), TracerProvider)


def configure_tracing(settings: Settings) -> bool:
    """Install the SDK's tracer provider if wanted and possible; True when spans are recorded."""
    if trace is None:
        if settings.tracing.enabled:
            log.warning(
                "tracing asked for but the otel extra is not installed",
                extra={"action": "tracing.unavailable"},
            )
        return False
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return True
    if not tracing_wanted(settings):
        return False
    attributes = {}
    if not os.environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = settings.tracing.service_name
    sdk = TracerProvider(resource=Resource.create(attributes))
    sdk.add_span_processor(BatchSpanProcessor(_exporter()))
    trace.set_tracer_provider(sdk)
    log.info("tracing on", extra={"action": "tracing.configured"})
    return True


def _exporter() -> Any:
    if os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "console":
        return ConsoleSpanExporter()
    # Imported here: the OTLP exporter pulls in protobuf, needed only when it is used.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def flush_tracing(timeout_ms: int = 5000) -> None:
    """Export buffered spans now (a pool child about to exit, a command about to end)."""
    if trace is None:
        return
    current = provider()
    if isinstance(current, TracerProvider):
        current.force_flush(timeout_ms)


def instrument_flask(app: Any) -> bool:
    """A server span around every request of ``app`` when spans are recorded (SSE streams
    included: the span lasts as long as the stream)."""
    if not sdk_installed():
        return False
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    # /metrics and /health are scraped every few seconds: spans for them would drown the rest.
    FlaskInstrumentor.instrument_app(  # type: ignore[no-untyped-call]
        app, tracer_provider=provider(), excluded_urls="/metrics,/health"
    )
    return True


class WorkflowTracingLayer(GraphEngineLayer):
    """Spans for a run (or slice) and each of its nodes. Hooks run on the task's thread, whose
    current span is the task's; node spans are ended by their events, whatever thread ran them.
    """

    def __init__(self, run_id: str, tenant_id: str, app_id: str) -> None:
        self.attributes = {
            "relay.run_id": run_id,
            "relay.tenant_id": tenant_id,
            "relay.app_id": app_id,
        }
        self._run: Any = None
        self._nodes: dict[str, Any] = {}

    def on_graph_start(self) -> None:
        self._run = start_span("workflow.run", self.attributes)

    def on_event(self, event: GraphEngineEvent) -> None:
        if self._run is None:
            return
        if isinstance(event, NodeRunStartedEvent):
            kind = _CLIENT_NODES.get(event.node_type)
            self._nodes[event.id] = start_span(
                f"{kind} {event.node_id}" if kind else f"workflow.node {event.node_type}",
                {
                    "relay.node_id": event.node_id,
                    "relay.node_type": event.node_type,
                    "relay.node_title": event.node_title,
                    "relay.iteration_index": event.iteration_index,
                },
                kind="client" if kind else "internal",
                parent_span=self._run,
            )
        elif isinstance(event, NodeRunSucceededEvent | NodeRunFailedEvent | NodeRunExceptionEvent):
            node = self._nodes.pop(event.id, None)
            error = (
                getattr(event, "error", None)
                if not isinstance(event, NodeRunSucceededEvent)
                else None
            )
            end_span(node, error=error, attributes=_call_attributes(event))

    def on_graph_end(self, event: GraphEngineEvent) -> None:
        for node in self._nodes.values():  # nodes a stop or pause cut short
            end_span(node, error="not finished")
        self._nodes.clear()
        error = event.error if isinstance(event, GraphRunFailedEvent) else None
        end_span(self._run, error=error, attributes={"relay.outcome": type(event).__name__})
        self._run = None


def _call_attributes(
    event: NodeRunSucceededEvent | NodeRunFailedEvent | NodeRunExceptionEvent,
) -> dict[str, Any]:
    """What a node's span says about the call it made (never prompts, bodies or secrets)."""
    meta, process = event.metadata or {}, event.process_data or {}
    attributes: dict[str, Any] = {"relay.elapsed": event.elapsed_time}
    if event.node_type == "llm":
        attributes.update(
            {
                "gen_ai.system": meta.get("provider"),
                "gen_ai.request.model": meta.get("model") or process.get("model_name"),
                "gen_ai.usage.input_tokens": meta.get("prompt_tokens"),
                "gen_ai.usage.output_tokens": meta.get("completion_tokens"),
            }
        )
    elif event.node_type == "http-request":
        method, _, url = str(process.get("request") or "").partition(" ")
        parts = urlsplit(url) if url else None
        attributes.update(
            {
                "http.request.method": method or None,
                # Host and path only: a query string may carry a token.
                "server.address": parts.hostname if parts else None,
                "url.path": parts.path if parts else None,
                "http.response.status_code": (event.outputs or {}).get("status_code"),
            }
        )
    return attributes
