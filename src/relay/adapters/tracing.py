"""Trace context for relay's spans: OpenTelemetry's API when it is installed, nothing otherwise.

Everything here is safe to call without the ``otel`` extra (no spans, no headers) and cheap
without a configured SDK (the API's tracer is then a no-op). Context travels in message headers
as W3C ``traceparent`` / ``tracestate``: the outbox row, the fair scheduler's stored item and the
Celery message each carry the context of the span that produced them, so a task that waited
(held by the scheduler, or republished by the outbox relay) still joins its producer's trace.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from typing import Any

try:
    from opentelemetry import propagate, trace
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode
except ImportError:  # pragma: no cover - the otel extra is not installed
    propagate = trace = None  # type: ignore[assignment]

TRACER_NAME = "relay"
# The headers the W3C propagator writes; any of them present means "context already attached".
CONTEXT_HEADERS = ("traceparent", "tracestate")

_KINDS = ("internal", "server", "client", "producer", "consumer")


# A provider that takes precedence over the global one (tests, embedding applications); the
# global provider is set once per process by ``relay.monitoring.tracing.configure_tracing``.
_PROVIDER: Any = None


def available() -> bool:
    """True when OpenTelemetry's API is importable."""
    return trace is not None


def use_provider(provider: Any) -> Any:
    """Record spans with ``provider`` instead of the global one (``None``: back to the global
    provider); returns the previous override."""
    global _PROVIDER
    previous, _PROVIDER = _PROVIDER, provider
    return previous


def provider() -> Any:
    """The tracer provider spans go to (``None`` without OpenTelemetry)."""
    if trace is None:
        return None
    return _PROVIDER if _PROVIDER is not None else trace.get_tracer_provider()


def _tracer() -> Any:
    return provider().get_tracer(TRACER_NAME)


def _kind(kind: str) -> Any:
    if kind not in _KINDS:
        raise ValueError(f"unknown span kind {kind!r}")
    return getattr(SpanKind, kind.upper())


def _attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    # OTel accepts str/bool/int/float; None is dropped and anything else becomes its string.
    clean: dict[str, Any] = {}
    for key, value in (attributes or {}).items():
        if value is None:
            continue
        clean[key] = value if isinstance(value, str | bool | int | float) else str(value)
    return clean


def extract(headers: Mapping[str, Any] | None) -> Any:
    """The trace context carried by ``headers`` (``None`` when they carry none)."""
    if trace is None or not headers or not any(h in headers for h in CONTEXT_HEADERS):
        return None
    carrier = {k: str(headers[k]) for k in CONTEXT_HEADERS if headers.get(k)}
    return propagate.extract(carrier)


def inject(headers: MutableMapping[str, Any], *, replace: bool = True) -> None:
    """Write the current span's context into ``headers``.

    ``replace=False`` keeps a context the headers already carry (a message re-sent later keeps
    its producer's trace). Nothing is written outside a recording span.
    """
    if trace is None or not trace.get_current_span().get_span_context().is_valid:
        return
    if not replace and has_context(headers):
        return
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    for key in CONTEXT_HEADERS:
        headers.pop(key, None)
    headers.update(carrier)


def has_context(headers: Mapping[str, Any] | None) -> bool:
    """True when ``headers`` carry a trace context."""
    return bool(headers) and bool(headers.get("traceparent"))  # type: ignore[union-attr]


@contextmanager
def span(
    name: str,
    attributes: Mapping[str, Any] | None = None,
    *,
    kind: str = "internal",
    parent: Any = None,
    link_current: bool = False,
) -> Iterator[Any]:
    """A span around the block, current inside it (``None`` without OpenTelemetry).

    ``parent`` is a context from ``extract`` (default: the current one). ``link_current`` adds a
    link to the span current at the call, for work done on behalf of another trace (a held task
    released by another tenant's completion).
    """
    if trace is None:
        yield None
        return
    links: Sequence[Any] = ()
    if link_current:
        current = trace.get_current_span().get_span_context()
        parent_trace = trace.get_current_span(parent).get_span_context().trace_id
        if current.is_valid and current.trace_id != parent_trace:
            links = (Link(current),)
    with _tracer().start_as_current_span(
        name,
        context=parent,
        kind=_kind(kind),
        attributes=_attributes(attributes),
        links=links,
    ) as current_span:
        yield current_span


def start_span(
    name: str,
    attributes: Mapping[str, Any] | None = None,
    *,
    kind: str = "internal",
    parent_span: Any = None,
) -> Any:
    """Start a span that is ended later with ``end_span`` (not made current).

    ``parent_span``: a span from ``start_span``/``span`` (default: the current span).
    """
    if trace is None:
        return None
    context = trace.set_span_in_context(parent_span) if parent_span is not None else None
    return _tracer().start_span(
        name, context=context, kind=_kind(kind), attributes=_attributes(attributes)
    )


def end_span(
    target: Any, *, error: str | None = None, attributes: Mapping[str, Any] | None = None
) -> None:
    """End a span from ``start_span``; ``error`` marks it failed with that description."""
    if target is None or trace is None:
        return
    if attributes:
        target.set_attributes(_attributes(attributes))
    if error is not None:
        target.set_status(Status(StatusCode.ERROR, error[:500]))
    target.end()


def current_ids() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` of the current span as hex, or ``None`` outside a span."""
    if trace is None:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id)
