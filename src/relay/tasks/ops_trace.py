"""``relay.ops_trace.deliver``: store an app's trace payload, then POST it to the trace endpoint.

The row in ``ops_traces`` is written first, in its own short transaction, so that a provider
outage never loses a trace; the HTTP call happens outside any transaction. Its id is derived from
the message's idempotency key (or, without one, the Celery task id, which a retry keeps), so every
delivery of one message meets the same row: a trace already ``delivered`` is not POSTed again,
one that failed is tried again. The row is its own idempotency record on purpose, instead of
``effect()``: a redelivery of an *undelivered* trace must still POST, which ``effect()`` would skip.
The receiver gets the same id in an ``Idempotency-Key`` header, to drop the rare duplicate of two
deliveries racing.

Errors: the network, 408, 429 and 5xx are transient (``RetryableTaskError``, honouring
``Retry-After``); any other answer that is not 2xx is fatal. Each failed attempt is counted per
app and day in Redis (``relay:ops_trace:failures:<app_id>``, one hash field per UTC day).
"""

from __future__ import annotations

import functools
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import redis
from sqlalchemy.exc import IntegrityError

from relay import catalog
from relay.adapters.sql import Database
from relay.config import OpsTraceSettings
from relay.models import OpsTrace, OpsTraceStatus, Tenant, utcnow
from relay.resilience.breaker import Breakers, CircuitOpen
from relay.retry import FatalTaskError, RetryableTaskError
from relay.tasks.base import RelayTask, relay_task

log = logging.getLogger(__name__)

FAILURES_KEY = "relay:ops_trace:failures:{app_id}"
# An app with no failure for this long loses its counters (the hash expires as a whole).
FAILURE_RETENTION_SECONDS = 30 * 86400
# A Retry-After beyond this is clamped: a broken header must not park a task for days.
MAX_RETRY_AFTER_SECONDS = 900.0
MAX_ERROR_CHARS = 2000
_TRACE_TYPE_CHARS = 64
_ID_NAMESPACE = uuid.UUID("6f1c2a59-5d8e-4c1e-9a43-0b7f3c2d9e10")
_RETRYABLE_STATUS = frozenset({408, 429})


@dataclass(frozen=True)
class StoredTrace:
    """What the delivery needs from the stored row."""

    status: str
    document: dict[str, Any]


@relay_task(catalog.DELIVER_OPS_TRACE)
def deliver_trace(
    self: RelayTask, tenant_id: str, app_id: str, trace_type: str, payload: dict[str, Any]
) -> dict[str, Any]:
    """Store the trace and deliver it; returns ``{"trace_id", "status"}`` (plus ``skipped``
    when an earlier delivery of this message delivered it already)."""
    self.require_tenant(tenant_id)
    validate_trace(app_id, trace_type, payload)
    settings = self.runtime.settings.ops_trace
    db = self.runtime.db
    trace_id = trace_id_for(self.effect_key(), self.request.id)
    stored = _store(db, trace_id, tenant_id, app_id, trace_type, payload, settings)
    if stored.status == OpsTraceStatus.DELIVERED:
        return {"trace_id": trace_id, "status": stored.status, "skipped": "duplicate"}
    if settings.endpoint is None:
        return {"trace_id": trace_id, "status": stored.status}
    try:
        post_trace(settings, stored.document, self.runtime.breakers)
    except (RetryableTaskError, FatalTaskError, CircuitOpen) as exc:
        _finish(db, trace_id, error=str(exc))
        count_failure(self.runtime.redis, app_id)
        log.warning(
            "ops trace delivery failed",
            extra={
                "action": "ops_trace.failed",
                "trace_id": trace_id,
                "app_id": app_id,
                "error": str(exc),
                "retryable": not isinstance(exc, FatalTaskError),
            },
        )
        raise
    _finish(db, trace_id, error=None)
    return {"trace_id": trace_id, "status": OpsTraceStatus.DELIVERED.value}


def trace_id_for(effect_key: str | None, task_id: str | None) -> str:
    """The row id of a message's trace: stable across its deliveries and retries."""
    basis = effect_key or task_id
    return str(uuid.uuid5(_ID_NAMESPACE, basis)) if basis else str(uuid.uuid4())


def validate_trace(app_id: str, trace_type: Any, payload: Any) -> None:
    """Refuse (``FatalTaskError``) an app id, trace type or payload a trace cannot have."""
    if not app_id or len(app_id) > 36:
        raise FatalTaskError(f"invalid app id {app_id!r}")
    if not isinstance(trace_type, str) or not trace_type or len(trace_type) > _TRACE_TYPE_CHARS:
        raise FatalTaskError(f"invalid trace type {trace_type!r}")
    if not isinstance(payload, dict):
        raise FatalTaskError(f"trace payload must be a JSON object, not {type(payload).__name__}")
    try:
        json.dumps(payload)
    except (TypeError, ValueError) as exc:
        raise FatalTaskError(f"trace payload is not JSON: {exc}") from exc


def _store(
    db: Database,
    trace_id: str,
    tenant_id: str,
    app_id: str,
    trace_type: str,
    payload: dict[str, Any],
    settings: OpsTraceSettings,
) -> StoredTrace:
    """Insert the row (first delivery) or find it (redelivery, retry); count the attempt."""
    with db.transaction() as session:
        row = session.get(OpsTrace, trace_id)
        if row is None:
            if session.get(Tenant, tenant_id) is None:
                raise FatalTaskError(f"unknown tenant {tenant_id}")
            row = OpsTrace(
                id=trace_id,
                tenant_id=tenant_id,
                app_id=app_id,
                trace_type=trace_type,
                payload=payload,
                status=OpsTraceStatus.PENDING,
                attempts=0,
            )
            try:
                with session.begin_nested():
                    session.add(row)
            except IntegrityError:
                # A concurrent delivery of the same message inserted it first (the savepoint's
                # rollback took our pending row out of the session again).
                row = session.get(OpsTrace, trace_id)
                if row is None:
                    raise
        if row.tenant_id != tenant_id:
            raise FatalTaskError(f"trace {trace_id} belongs to another tenant")
        if row.status != OpsTraceStatus.DELIVERED and settings.endpoint is not None:
            row.attempts += 1
        return StoredTrace(status=row.status, document=trace_document(row))


def trace_document(row: Any) -> dict[str, Any]:
    """The JSON document POSTed for a stored trace (an ``OpsTrace`` or a row of its columns)."""
    return {
        "id": row.id,
        "tenant_id": row.tenant_id,
        "app_id": row.app_id,
        "trace_type": row.trace_type,
        "payload": row.payload,
        "created_at": row.created_at.isoformat(),
    }


def post_trace(
    settings: OpsTraceSettings,
    document: dict[str, Any],
    breakers: Breakers | None = None,
    *,
    client: httpx.Client | None = None,
) -> None:
    """POST ``document`` as JSON to the endpoint; raise the policy's error kinds on failure.

    Through the endpoint host's circuit (``http:<host>``) when ``breakers`` is given: while the
    endpoint is unreachable, deliveries fail at once (``CircuitOpen``) instead of each waiting
    for its connect timeout. ``client`` keeps one connection for several POSTs.
    """
    if settings.endpoint is None:
        raise FatalTaskError("no ops trace endpoint configured")
    post = functools.partial(
        client.post if client is not None else httpx.post,
        settings.endpoint,
        json=document,
        headers={"Idempotency-Key": str(document["id"])},
        timeout=settings.timeout,
    )
    try:
        if breakers is None:
            response = post()
        else:
            circuit = f"http:{httpx.URL(settings.endpoint).host}"
            response = breakers.call(circuit, post)
    except httpx.TransportError as exc:
        raise RetryableTaskError(f"cannot reach {settings.endpoint}: {exc!r}") from exc
    status = response.status_code
    if 200 <= status < 300:
        return
    detail = f"{settings.endpoint} answered {status}: {response.text[:200]}"
    if status >= 500 or status in _RETRYABLE_STATUS:
        raise RetryableTaskError(detail, delay=retry_after(response.headers.get("Retry-After")))
    raise FatalTaskError(detail)


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), clamped."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or utcnow())).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _finish(db: Database, trace_id: str, *, error: str | None) -> None:
    """Mark the row delivered, or failed with ``error``."""
    with db.transaction() as session:
        row = session.get(OpsTrace, trace_id)
        # Gone: the app was deleted meanwhile. Delivered: a racing duplicate won; never regress.
        if row is None or row.status == OpsTraceStatus.DELIVERED:
            return
        if error is None:
            row.status = OpsTraceStatus.DELIVERED
            row.delivered_at = utcnow()
        else:
            row.status = OpsTraceStatus.FAILED
            row.last_error = error[:MAX_ERROR_CHARS]


def count_failure(
    client: redis.Redis, app_id: str, now: datetime | None = None, *, count: int = 1
) -> None:
    """Count ``count`` failed deliveries for ``app_id`` today (UTC); a Redis outage only logs."""
    key = FAILURES_KEY.format(app_id=app_id)
    day = (now or utcnow()).strftime("%Y-%m-%d")
    try:
        pipe = client.pipeline(transaction=True)
        pipe.hincrby(key, day, count)
        pipe.expire(key, FAILURE_RETENTION_SECONDS)
        pipe.execute()
    except redis.RedisError:
        # The counter is monitoring; losing one count must not change the trace's outcome.
        log.warning(
            "ops trace failure not counted",
            extra={"action": "ops_trace.count_failed", "app_id": app_id},
            exc_info=True,
        )


def failure_counts(client: redis.Redis, app_id: str) -> dict[str, int]:
    """Failed deliveries of ``app_id`` per UTC day (``YYYY-MM-DD``), as kept in Redis."""
    raw: dict[Any, Any] = client.hgetall(FAILURES_KEY.format(app_id=app_id))
    return {_text(day): int(count) for day, count in raw.items()}


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
