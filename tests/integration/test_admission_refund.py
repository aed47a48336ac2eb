"""Admission counts work that exists: when the transaction creating it fails, the tokens (and the
day's run) go back, so the tenant's next request is admitted as if the failed one never came.

The failure is a real one of the database session: a ``before_flush`` hook that refuses the
first insert of the row in question (as a lost connection or a constraint would), once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from relay.app_factory import create_app
from relay.config import Settings
from relay.errors import QuotaExceeded
from relay.models import Base, Document, WorkflowRun
from relay.runtime import Runtime
from relay.services.app_service import AppService
from relay.services.dataset_service import DatasetService
from relay.services.document_service import DocumentService, NewDocument
from relay.services.tenant_service import TenantService
from relay.services.workflow_run_service import WorkflowRunService
from tests.conftest import migrated_external_db_in_use
from tests.integration.streaming.support import workflow_graph


class InjectedFailure(Exception):
    """The database refused the write (injected)."""


@contextmanager
def tight_runtime(settings: Settings, plan: str, burst: int, daily: int = 0) -> Iterator[Runtime]:
    """A runtime whose ``plan`` admits ``burst`` submissions, refilled only after ~100 s."""
    scheduling = settings.scheduling.model_copy(
        update={
            "rate_burst": {plan: burst},
            "rate_per_second": {plan: 0.01},
            "daily_workflow_runs": {plan: daily},
        }
    )
    tight = settings.model_copy(update={"scheduling": scheduling})
    runtime: Runtime = create_app(tight).extensions["relay"]
    if not migrated_external_db_in_use(tight):
        Base.metadata.create_all(runtime.db.engine)
    try:
        yield runtime
    finally:
        runtime.close()


@contextmanager
def first_insert_fails(runtime: Runtime, model: type) -> Iterator[list[int]]:
    """The first flush that inserts a ``model`` row raises ``InjectedFailure``."""
    failed: list[int] = []

    def refuse(session: Session, *_: Any) -> None:
        if not failed and any(isinstance(row, model) for row in session.new):
            failed.append(1)
            raise InjectedFailure(f"cannot insert {model.__name__}")

    event.listen(runtime.db.sessions, "before_flush", refuse)
    try:
        yield failed
    finally:
        event.remove(runtime.db.sessions, "before_flush", refuse)


def _count(runtime: Runtime, model: type) -> int:
    with runtime.db.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_a_run_whose_transaction_fails_gives_its_token_and_daily_run_back(
    settings: Settings,
) -> None:
    with tight_runtime(settings, "sandbox", burst=1, daily=1) as runtime:
        tenant = TenantService(runtime).create("refund", "sandbox")
        apps = AppService(runtime)
        app_id = apps.create(tenant.id, name="flow", mode="workflow").id
        apps.sync_draft_workflow(tenant.id, app_id, workflow_graph())
        apps.publish_workflow(tenant.id, app_id)
        runs = WorkflowRunService(runtime)

        with first_insert_fails(runtime, WorkflowRun) as failed:
            with pytest.raises(InjectedFailure):
                runs.start(tenant.id, app_id, user="u", inputs={"topic": "x"})
            assert failed == [1]
        assert _count(runtime, WorkflowRun) == 0

        # The only token of the bucket and the only run of the day are available again.
        started = runs.start(tenant.id, app_id, user="u", inputs={"topic": "x"})
        assert _count(runtime, WorkflowRun) == 1
        assert started.run_id
        with pytest.raises(QuotaExceeded):
            runs.start(tenant.id, app_id, user="u", inputs={"topic": "x"})


def test_an_upload_whose_transaction_fails_gives_its_tokens_back(settings: Settings) -> None:
    with tight_runtime(settings, "professional", burst=2) as runtime:
        tenant = TenantService(runtime).create("uploader", "professional")
        dataset = DatasetService(runtime).create(tenant.id, name="kb")
        documents = DocumentService(runtime)
        batch = [NewDocument("a.txt", "alpha"), NewDocument("b.txt", "beta")]

        with first_insert_fails(runtime, Document) as failed:
            with pytest.raises(InjectedFailure):
                documents.upload(tenant.id, dataset.id, batch)
            assert failed == [1]
        assert _count(runtime, Document) == 0

        created = documents.upload(tenant.id, dataset.id, batch)
        assert len(created.documents) == 2
        with pytest.raises(QuotaExceeded):
            documents.upload(tenant.id, dataset.id, [NewDocument("c.txt", "gamma")])
