"""``app_was_deleted``: remove the app's history (messages, runs, traces) in the background.

The request deletes the app and its small satellite rows; conversations, messages and workflow
runs can be millions of rows, so ``relay.app_deletion.remove_app`` deletes them in batches.
"""

from __future__ import annotations

from relay import catalog
from relay.events.bus import EventContext
from relay.events.payloads import AppDeleted


def enqueue_app_removal(payload: AppDeleted, ctx: EventContext) -> None:
    """Enqueue the batched removal of everything the app left behind."""
    ctx.outbox.enqueue(
        ctx.require_session(),
        catalog.REMOVE_APP.name,
        args=[payload.tenant_id, payload.app_id],
        tenant_id=payload.tenant_id,
        idempotency_key=f"remove-app:{payload.app_id}",
    )
