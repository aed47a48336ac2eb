"""Structural rules every model follows, and one round trip through SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import Engine, Table, create_engine, select
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

import relay.models as models
from relay.models import (
    App,
    AppMode,
    Base,
    Conversation,
    Dataset,
    Document,
    IndexingStatus,
    Message,
    ProviderQuota,
    TaskRecord,
    TaskStatus,
    Tenant,
    TenantOwned,
    UTCDateTime,
)

SYSTEM_TABLES = {"task_records", "dead_letters", "outbox_messages"}


def _mapped_classes() -> list[type[Base]]:
    return [mapper.class_ for mapper in Base.registry.mappers]


def _tables_with_tenant_id() -> list[Table]:
    return [t for t in Base.metadata.sorted_tables if "tenant_id" in t.columns]


@pytest.fixture
def engine() -> Iterator[Engine]:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.mark.parametrize("table", _tables_with_tenant_id(), ids=lambda t: t.name)
def test_tenant_id_is_indexed(table: Table) -> None:
    assert any(index.columns.keys()[0] == "tenant_id" for index in table.indexes), (
        f"{table.name}.tenant_id has no index"
    )


@pytest.mark.parametrize("table", _tables_with_tenant_id(), ids=lambda t: t.name)
def test_tenant_owned_tables_cascade_from_tenants(table: Table) -> None:
    column = table.c.tenant_id
    if table.name in SYSTEM_TABLES:
        # System rows outlive (and may be written while deleting) their tenant.
        assert column.nullable
        assert not column.foreign_keys
        return
    assert not column.nullable
    [fk] = column.foreign_keys
    assert fk.column.table.name == "tenants"
    assert fk.ondelete == "CASCADE"


def test_tenant_owned_marker_matches_the_tables() -> None:
    owned = {cls.__tablename__ for cls in _mapped_classes() if issubclass(cls, TenantOwned)}
    with_tenant = {t.name for t in _tables_with_tenant_id()}
    assert owned == with_tenant - SYSTEM_TABLES


def test_every_model_and_enum_is_exported() -> None:
    exported = set(models.__all__)
    assert {cls.__name__ for cls in _mapped_classes()} <= exported
    assert all(hasattr(models, name) for name in exported)


def test_utc_datetime_rejects_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="naive"):
        UTCDateTime().process_bind_param(datetime(2026, 1, 1), None)


def test_utc_datetime_stores_in_utc() -> None:
    tokyo = datetime(2026, 1, 1, 9, tzinfo=timezone(timedelta(hours=9)))
    assert UTCDateTime().process_bind_param(tokyo, None) == datetime(2026, 1, 1, tzinfo=UTC)


def test_naive_datetime_is_refused_on_flush(engine: Engine) -> None:
    with Session(engine) as session:
        session.add(Tenant(name="acme", created_at=datetime(2026, 1, 1)))
        with pytest.raises(StatementError, match="naive"):
            session.flush()


def test_round_trip_on_sqlite(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        tenant = Tenant(name="acme", plan="team")
        session.add(tenant)
        session.flush()
        app = App(tenant_id=tenant.id, name="bot", mode=AppMode.ADVANCED_CHAT)
        session.add(app)
        session.flush()
        conversation = Conversation(tenant_id=tenant.id, app_id=app.id)
        session.add(conversation)
        session.flush()
        session.add(
            Message(
                tenant_id=tenant.id,
                app_id=app.id,
                conversation_id=conversation.id,
                query="hi",
                total_price=Decimal("0.0000123"),
            )
        )
        session.add(TaskRecord(id="celery-1", name="ping", queue="default", tenant_id=tenant.id))
        tenant_id = tenant.id

    with Session(engine) as session:
        tenant = session.get_one(Tenant, tenant_id)
        assert tenant.status == "normal"
        assert tenant.created_at.tzinfo is UTC
        app = session.scalars(select(App).where(App.tenant_id == tenant_id)).one()
        assert app.mode == AppMode.ADVANCED_CHAT
        assert app.model_config is None
        message = session.scalars(select(Message)).one()
        assert message.total_price == Decimal("0.0000123")
        assert message.answer == ""
        record = session.get_one(TaskRecord, "celery-1")
        assert record.status == TaskStatus.PENDING
        assert record.args == []
        assert record.headers is None
        assert record.enqueued_at.tzinfo is UTC


def test_document_defaults(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        tenant = Tenant(name="acme")
        session.add(tenant)
        session.flush()
        dataset = Dataset(tenant_id=tenant.id, name="kb")
        session.add(dataset)
        session.flush()
        document = Document(tenant_id=tenant.id, dataset_id=dataset.id, name="a.txt")
        session.add(document)
        session.flush()
        assert document.indexing_status == IndexingStatus.WAITING
        assert document.enabled is True
        assert document.word_count == 0


def test_plan_and_quota_checks(engine: Engine) -> None:
    with Session(engine) as session:
        session.add(Tenant(name="acme", plan="platinum"))
        with pytest.raises(IntegrityError):
            session.flush()
    with Session(engine) as session:
        tenant = Tenant(name="acme")
        session.add(tenant)
        session.flush()
        session.add(
            ProviderQuota(
                tenant_id=tenant.id,
                provider="openai",
                quota_type="trial",
                quota_limit=1,
                quota_used=-1,
            )
        )
        with pytest.raises(IntegrityError):
            session.flush()
