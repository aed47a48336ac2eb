"""Every domain signal, on one private blinker namespace, each with its payload type.

Names follow Dify's. Emit them only through ``relay.events.bus.EventBus.emit`` (which isolates
receivers and counts them), never with ``signal.send`` directly.
"""

from __future__ import annotations

from blinker import NamedSignal, Namespace

from relay.events import payloads as p

_signals = Namespace()

tenant_was_created = _signals.signal(
    "tenant_was_created", doc="A tenant was created; payload TenantCreated."
)
tenant_was_updated = _signals.signal(
    "tenant_was_updated", doc="A tenant's plan or settings changed; payload TenantUpdated."
)
app_was_created = _signals.signal("app_was_created", doc="An app was created; payload AppCreated.")
app_was_deleted = _signals.signal("app_was_deleted", doc="An app was deleted; payload AppDeleted.")
app_model_config_was_updated = _signals.signal(
    "app_model_config_was_updated",
    doc="An app's model config changed; payload AppModelConfigUpdated.",
)
app_published_workflow_was_updated = _signals.signal(
    "app_published_workflow_was_updated",
    doc="An app's workflow was published; payload AppPublishedWorkflowUpdated.",
)
app_draft_workflow_was_synced = _signals.signal(
    "app_draft_workflow_was_synced",
    doc="An app's draft workflow was saved; payload AppDraftWorkflowSynced.",
)
dataset_was_deleted = _signals.signal(
    "dataset_was_deleted", doc="A dataset was deleted; payload DatasetDeleted."
)
document_was_deleted = _signals.signal(
    "document_was_deleted", doc="A document was deleted; payload DocumentDeleted."
)
document_index_created = _signals.signal(
    "document_index_created",
    doc="Documents were uploaded and await indexing; payload DocumentIndexCreated.",
)
message_was_created = _signals.signal(
    "message_was_created", doc="A message was answered; payload MessageCreated."
)

PAYLOAD_TYPES: dict[NamedSignal, type] = {
    tenant_was_created: p.TenantCreated,
    tenant_was_updated: p.TenantUpdated,
    app_was_created: p.AppCreated,
    app_was_deleted: p.AppDeleted,
    app_model_config_was_updated: p.AppModelConfigUpdated,
    app_published_workflow_was_updated: p.AppPublishedWorkflowUpdated,
    app_draft_workflow_was_synced: p.AppDraftWorkflowSynced,
    dataset_was_deleted: p.DatasetDeleted,
    document_was_deleted: p.DocumentDeleted,
    document_index_created: p.DocumentIndexCreated,
    message_was_created: p.MessageCreated,
}

ALL_SIGNALS: tuple[NamedSignal, ...] = tuple(PAYLOAD_TYPES)
