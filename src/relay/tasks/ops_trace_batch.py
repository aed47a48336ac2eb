"""``relay.ops_trace.deliver_batch``: many traces of one app stored in one transaction.

An app that emits traces by the hundred (one per node of a workflow run, say) sends them in one
message: ``deliver_batch(tenant_id, app_id, traces)`` with ``traces`` a list of
``{"trace_type": ..., "payload": {...}}`` (at most ``MAX_TRACES``). The rows are written together
(one select, one insert, one update for the whole batch) instead of one task and three
transactions per trace; each trace keeps the single-trace contract otherwise:

- its row id is derived from the message's idempotency key (or task id) and its position, so a
  redelivery or a retry meets the same rows, and a trace already ``delivered`` is not POSTed
  again;
- with an endpoint configured, each undelivered trace is POSTed as its own JSON document with
  its id in ``Idempotency-Key`` (over one HTTP connection), exactly as ``relay.ops_trace.deliver``
  would; the results (status, error, ``attempts``: the POSTs made) are written back in one
  transaction.

Errors: a malformed item refuses the whole message (``FatalTaskError`` naming the item) before
anything is stored. A transient failure (network, 408, 429, 5xx) stops the batch: the traces
not yet delivered are retried with the task, the delivered ones are not sent again. A fatal
answer for one trace marks that trace failed and the others are still delivered; the task then
fails (a dead letter, whose replay tries the undelivered ones again).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from relay import catalog
from relay.adapters.sql import Database
from relay.models import OpsTrace, OpsTraceStatus, Tenant, utcnow
from relay.resilience.breaker import CircuitOpen
from relay.retry import FatalTaskError, RetryableTaskError
from relay.tasks.base import RelayTask, relay_task
from relay.tasks.ops_trace import (
    MAX_ERROR_CHARS,
    StoredTrace,
    count_failure,
    post_trace,
    trace_document,
    trace_id_for,
    validate_trace,
)

log = logging.getLogger(__name__)

MAX_TRACES = 1000


@relay_task(catalog.DELIVER_OPS_TRACES)
def deliver_traces(
    self: RelayTask, tenant_id: str, app_id: str, traces: list[dict[str, Any]]
) -> dict[str, Any]:
    """Store the traces and deliver the undelivered ones; returns their ids in order, and how
    many are stored and delivered."""
    self.require_tenant(tenant_id)
    items = validate_batch(app_id, traces)
    settings = self.runtime.settings.ops_trace
    db = self.runtime.db
    basis = self.effect_key() or self.request.id
    ids = [trace_id_for(f"{basis}:{index}", None) for index in range(len(items))]
    stored = store_traces(db, tenant_id, app_id, items, ids)
    undelivered = [t.document for t in stored if t.status != OpsTraceStatus.DELIVERED]
    result: dict[str, Any] = {
        "trace_ids": ids,
        "stored": len(ids),
        "delivered": len(ids) - len(undelivered),
    }
    if settings.endpoint is None or not undelivered:
        return result
    delivered: list[str] = []
    failed: dict[str, str] = {}
    stop: Exception | None = None
    fatal: FatalTaskError | None = None
    with httpx.Client() as client:
        for document in undelivered:
            try:
                post_trace(settings, document, self.runtime.breakers, client=client)
            except FatalTaskError as exc:
                failed[document["id"]] = str(exc)
                fatal = fatal or exc
                continue
            except (RetryableTaskError, CircuitOpen) as exc:
                # The endpoint is away: the rest would fail the same way, after their timeouts.
                failed[document["id"]] = str(exc)
                stop = exc
                break
            delivered.append(document["id"])
    finish_traces(db, delivered, failed)
    result["delivered"] += len(delivered)
    if failed:
        count_failure(self.runtime.redis, app_id, count=len(failed))
        log.warning(
            "ops trace batch delivery failed",
            extra={
                "action": "ops_trace.batch_failed",
                "app_id": app_id,
                "failed": len(failed),
                "delivered": len(delivered),
                "retryable": stop is not None,
            },
        )
    if stop is not None:
        raise stop
    if fatal is not None:
        raise FatalTaskError(f"{len(failed)} of {len(ids)} traces refused; first: {fatal}")
    return result


def validate_batch(app_id: str, traces: Any) -> list[tuple[str, dict[str, Any]]]:
    """``(trace_type, payload)`` of each item, or ``FatalTaskError`` naming the first bad one."""
    if not isinstance(traces, list) or not traces:
        raise FatalTaskError("traces must be a non-empty list")
    if len(traces) > MAX_TRACES:
        raise FatalTaskError(f"at most {MAX_TRACES} traces per message, not {len(traces)}")
    items: list[tuple[str, dict[str, Any]]] = []
    for index, item in enumerate(traces):
        if not isinstance(item, dict) or set(item) != {"trace_type", "payload"}:
            raise FatalTaskError(
                f"trace {index}: must be an object with exactly trace_type and payload"
            )
        try:
            validate_trace(app_id, item["trace_type"], item["payload"])
        except FatalTaskError as exc:
            raise FatalTaskError(f"trace {index}: {exc}") from exc
        items.append((item["trace_type"], item["payload"]))
    return items


def store_traces(
    db: Database,
    tenant_id: str,
    app_id: str,
    items: Sequence[tuple[str, dict[str, Any]]],
    ids: Sequence[str],
) -> list[StoredTrace]:
    """Insert the rows not there yet (first delivery) in one transaction; returns each trace's
    status and document, in order.

    A concurrent delivery of the same message may insert the same rows: the insert skips rows
    that exist. A row id that belongs to another tenant is refused.
    """
    dialect = sqlite if db.is_sqlite else postgresql
    with db.transaction() as session:
        if session.get(Tenant, tenant_id) is None:
            raise FatalTaskError(f"unknown tenant {tenant_id}")
        now = utcnow()
        values = [
            {
                "id": trace_id,
                "tenant_id": tenant_id,
                "app_id": app_id,
                "trace_type": trace_type,
                "payload": payload,
                "status": OpsTraceStatus.PENDING,
                "attempts": 0,
                "created_at": now,
            }
            for trace_id, (trace_type, payload) in zip(ids, items, strict=True)
        ]
        session.execute(
            dialect.insert(OpsTrace.__table__).on_conflict_do_nothing(index_elements=["id"]),
            values,
        )
        rows = {
            row.id: row
            for row in session.execute(
                select(
                    OpsTrace.id,
                    OpsTrace.tenant_id,
                    OpsTrace.app_id,
                    OpsTrace.trace_type,
                    OpsTrace.payload,
                    OpsTrace.status,
                    OpsTrace.created_at,
                ).where(OpsTrace.id.in_(ids), OpsTrace.tenant_id == tenant_id)
            )
        }
        missing = [trace_id for trace_id in ids if trace_id not in rows]
        if missing:
            raise FatalTaskError(f"trace {missing[0]} belongs to another tenant")
        return [
            StoredTrace(status=row.status, document=trace_document(row))
            for row in (rows[trace_id] for trace_id in ids)
        ]


def finish_traces(db: Database, delivered: Sequence[str], failed: dict[str, str]) -> None:
    """Mark ``delivered`` rows delivered and ``failed`` ones failed with their error, counting
    the POST in ``attempts``, in one transaction; a row delivered meanwhile (a racing duplicate)
    is never regressed."""
    if not delivered and not failed:
        return
    not_delivered = OpsTrace.status != OpsTraceStatus.DELIVERED
    with db.transaction() as session:
        if delivered:
            session.execute(
                update(OpsTrace)
                .where(OpsTrace.id.in_(delivered), not_delivered)
                .values(
                    status=OpsTraceStatus.DELIVERED,
                    delivered_at=utcnow(),
                    attempts=OpsTrace.attempts + 1,
                )
            )
        for trace_id, error in failed.items():
            session.execute(
                update(OpsTrace)
                .where(OpsTrace.id == trace_id, not_delivered)
                .values(
                    status=OpsTraceStatus.FAILED,
                    last_error=error[:MAX_ERROR_CHARS],
                    attempts=OpsTrace.attempts + 1,
                )
            )
