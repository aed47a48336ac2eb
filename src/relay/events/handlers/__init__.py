"""Event handlers, one module each, wired by the explicit ``register_handlers()`` table.

Handlers do O(1) work inside the caller's transaction (``ctx.session``) or enqueue a task through
the outbox; they never commit. Only a handler whose failure must fail the request is critical.
"""

from __future__ import annotations

from blinker import NamedSignal

from relay.events import signals
from relay.events.bus import EventBus, Receiver
from relay.events.handlers.app_dataset_joins import (
    sync_joins_from_model_config,
    sync_joins_from_published_workflow,
)
from relay.events.handlers.app_removal import enqueue_app_removal
from relay.events.handlers.app_site import create_site_and_installed_app
from relay.events.handlers.dataset_cleanup import enqueue_dataset_cleanup, enqueue_document_cleanup
from relay.events.handlers.document_indexing import enqueue_document_indexing
from relay.events.handlers.message_quota import deduct_provider_quota
from relay.events.handlers.tenant_plan import cache_tenant_plan
from relay.events.handlers.tenant_quotas import create_default_quotas
from relay.events.handlers.tool_parameters_cache import clear_tool_parameters_cache


def register_handlers(bus: EventBus) -> None:
    """Connect every handler in ``HANDLERS`` to its signal (idempotent)."""
    for signal, handler, critical in HANDLERS:
        bus.connect(signal, handler, critical=critical, writes=handler not in NO_ROWS)


# Handlers that add nothing to the caller's session (their Redis writes run after commit): they
# need no savepoint of their own.
NO_ROWS: frozenset[Receiver] = frozenset({cache_tenant_plan, clear_tool_parameters_cache})

# (signal, handler, critical)
HANDLERS: tuple[tuple[NamedSignal, Receiver, bool], ...] = (
    (signals.tenant_was_created, create_default_quotas, False),
    (signals.tenant_was_created, cache_tenant_plan, False),
    (signals.tenant_was_updated, cache_tenant_plan, False),
    (signals.app_was_created, create_site_and_installed_app, False),
    (signals.app_was_deleted, enqueue_app_removal, False),
    (signals.app_model_config_was_updated, sync_joins_from_model_config, False),
    (signals.app_published_workflow_was_updated, sync_joins_from_published_workflow, False),
    (signals.app_draft_workflow_was_synced, clear_tool_parameters_cache, False),
    # Over quota, the message must not be recorded: the failure has to reach the service.
    (signals.message_was_created, deduct_provider_quota, True),
    (signals.dataset_was_deleted, enqueue_dataset_cleanup, False),
    (signals.document_was_deleted, enqueue_document_cleanup, False),
    (signals.document_index_created, enqueue_document_indexing, False),
)
