"""Keep ``AppDatasetJoin`` rows equal to the datasets an app's config or workflow references.

The joins answer "which apps use this dataset" (shown before a dataset is deleted, and used to
clean up after it); they are derived data, so each save recomputes them: new references are
added, dropped ones removed. Only datasets that exist in the app's own tenant count, so a config
naming another tenant's dataset id links nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Set

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from relay.events.bus import EventContext
from relay.events.handlers.dataset_refs import dataset_ids_from_graph, dataset_ids_from_model_config
from relay.events.payloads import AppModelConfigUpdated, AppPublishedWorkflowUpdated
from relay.models import App, AppDatasetJoin, Dataset

log = logging.getLogger(__name__)


def sync_joins_from_model_config(payload: AppModelConfigUpdated, ctx: EventContext) -> None:
    """``app_model_config_was_updated``: joins follow the datasets the model config names."""
    referenced = dataset_ids_from_model_config(payload.model_config)
    sync_app_dataset_joins(ctx.require_session(), payload.tenant_id, payload.app_id, referenced)


def sync_joins_from_published_workflow(
    payload: AppPublishedWorkflowUpdated, ctx: EventContext
) -> None:
    """``app_published_workflow_was_updated``: joins follow the knowledge-retrieval nodes."""
    referenced = dataset_ids_from_graph(payload.graph)
    sync_app_dataset_joins(ctx.require_session(), payload.tenant_id, payload.app_id, referenced)


def sync_app_dataset_joins(
    session: Session, tenant_id: str, app_id: str, referenced: Set[str]
) -> tuple[set[str], set[str]]:
    """Make the app's joins equal ``referenced`` (within the tenant); returns (added, removed)."""
    app = session.scalar(select(App.id).where(App.tenant_id == tenant_id, App.id == app_id))
    if app is None:
        log.warning(
            "dataset joins not synced: no such app in the tenant",
            extra={"action": "event.app_missing", "tenant_id": tenant_id, "app_id": app_id},
        )
        return set(), set()
    wanted: set[str] = set()
    if referenced:
        wanted = set(
            session.scalars(
                select(Dataset.id).where(
                    Dataset.tenant_id == tenant_id, Dataset.id.in_(sorted(referenced))
                )
            )
        )
    current = set(
        session.scalars(
            select(AppDatasetJoin.dataset_id).where(
                AppDatasetJoin.tenant_id == tenant_id, AppDatasetJoin.app_id == app_id
            )
        )
    )
    added, removed = wanted - current, current - wanted
    if removed:
        session.execute(
            delete(AppDatasetJoin).where(
                AppDatasetJoin.tenant_id == tenant_id,
                AppDatasetJoin.app_id == app_id,
                AppDatasetJoin.dataset_id.in_(sorted(removed)),
            )
        )
    session.add_all(
        AppDatasetJoin(tenant_id=tenant_id, app_id=app_id, dataset_id=dataset_id)
        for dataset_id in sorted(added)
    )
    session.flush()
    return added, removed
